"""Long-lived connections follow the registry (SPEC section 16).

An admitted WebSocket or SSE connection keeps its Exchange here. Whenever this instance
installs a new snapshot or learns of a revocation, every held connection runs the policy
chain's RECHECK again; one that would now be refused is ended with that refusal (a close
code on a WebSocket, an `event: close` on SSE). Changes reach every instance within a
second (SPEC section 3), and the check runs within `POLL_SECONDS` of the change.
"""

from __future__ import annotations

import asyncio
import logging

from proxy.exchange import Exchange, Rejection
from proxy.policy import recheck

__all__ = ["CLOSE_CODES", "LiveConnections"]

logger = logging.getLogger("gateway.live")

POLL_SECONDS = 0.2
GOING_AWAY = 1001
# WebSocket close codes for a refusal of an open connection (4000-4999: application codes).
CLOSE_CODES = {
    "AUTH_ERROR": 4401,
    "SUBSCRIPTION_INACTIVE": 4402,
    "FORBIDDEN": 4403,
    "TENANT_READ_ONLY": 4403,
    "SERVICE_UNAVAILABLE": GOING_AWAY,
}


class LiveConnections:
    """The open WebSocket and SSE connections of one instance, and the loop that rechecks them."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self._held: dict[Exchange, object] = {}

    def hold(self, exchange: Exchange, end) -> None:
        """Keep `exchange` under watch; `end(rejection)` closes it if the registry refuses it."""
        self._held[exchange] = end

    def release(self, exchange: Exchange) -> None:
        self._held.pop(exchange, None)

    def __len__(self) -> int:
        return len(self._held)

    def _epoch(self) -> tuple:
        runtime = self.runtime
        return id(runtime.snapshot), runtime.revoked_tokens.generation

    async def run(self) -> None:
        seen = self._epoch()
        while True:
            await asyncio.sleep(POLL_SECONDS)
            epoch = self._epoch()
            if epoch != seen:
                seen = epoch
                self.recheck_all()

    def recheck_all(self) -> int:
        """Run RECHECK on every held connection; returns how many were ended."""
        ended = 0
        for exchange, end in list(self._held.items()):
            rejection: Rejection | None = recheck(exchange)
            if rejection is None:
                continue
            self._held.pop(exchange, None)
            logger.info(
                "open %s connection ended: %s",
                exchange.door,
                rejection.code,
                extra={"request_id": exchange.request_id, "path": exchange.path},
            )
            end(rejection)
            ended += 1
        return ended
