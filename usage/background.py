"""The in-process roll-up of a gateway without Redis: its batches never leave this process,
so the Celery worker cannot see them and this instance applies them itself."""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from proxy.metering import local_batches
from usage.rollup import roll_up

__all__ = ["usage_tasks"]

logger = logging.getLogger("gateway.usage")


async def _roll_up_forever(runtime) -> None:
    while True:
        await asyncio.sleep(settings.USAGE_ROLLUP_SECONDS)
        try:
            await runtime.watcher.run_in_db_thread(roll_up, local_batches)
        except Exception:
            logger.exception("in-process usage roll-up failed; the batches stay pending")


def usage_tasks() -> list:
    """Background tasks for `proxy.runtime.Runtime`: the local roll-up, without Redis only."""

    def local_rollup(runtime):
        if runtime.redis is not None:
            return None
        return _roll_up_forever(runtime)

    return [("usage-rollup", local_rollup)]
