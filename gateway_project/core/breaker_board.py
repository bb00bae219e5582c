"""Where each gateway instance publishes its circuit breakers' state and its config status
(SPEC sections 8 and 16).

Breakers live in each instance's runtime (`proxy.breaker`) and are per instance. Every
`PUBLISH_SECONDS` an instance writes one entry under its own name: the breakers that are
not plainly closed (open, half-open, or closed with failures counted) and its config
status (version applied, version seen, lag, and the object that failed to compile while
its config is stale). The entries live in a Redis hash shared by the cluster when Redis is
configured, this process's memory otherwise. The control plane (management API, admin,
health views, dashboard) reads the board, so what staff see is what the data plane acts
on; an instance that stops publishing drops off after `STALE_SECONDS`.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from django.conf import settings

from gateway_project.core.broadcast import prefixed, sync_redis

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "STATES",
    "Board",
    "encode",
    "publish_local",
    "read_board",
    "recent_board",
]

logger = logging.getLogger("gateway.breaker")

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
STATES = (CLOSED, HALF_OPEN, OPEN)
SEVERITY = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
PUBLISH_SECONDS = 0.5  # the board is at most this old (SPEC: at most 1 s)
STALE_SECONDS = 3.0
BOARD_KEY = "breakers"
_CLOSED_DEFAULT = {"state": CLOSED, "failure_count": 0, "time_until_retry": 0.0}

_local: dict[str, str] = {}  # instance -> encoded entry, without Redis
_local_lock = threading.Lock()


def board_key() -> str:
    return prefixed(BOARD_KEY)


def encode(instance: str, breakers: dict[int, dict], config: dict | None = None) -> str:
    """One instance's entry: its name, when, its breakers that are not plainly closed, and
    its config status (`proxy.watcher.ConfigStatus.published`)."""
    entry = {"instance": instance, "updated_at": time.time(), "breakers": breakers}
    if config is not None:
        entry["config"] = config
    return json.dumps(entry)


def publish_local(instance: str, entry: str) -> None:
    with _local_lock:
        _local[instance] = entry


def withdraw_local(instance: str) -> None:
    with _local_lock:
        _local.pop(instance, None)


class Board:
    """Every live instance's published breakers, read once per request."""

    def __init__(self, entries: list[dict]) -> None:
        self.entries = sorted(entries, key=lambda e: e["instance"])

    def per_instance(self, target_id: int) -> list[dict]:
        key = str(target_id)
        return [
            {
                "instance": entry["instance"],
                "updated_at": entry["updated_at"],
                **entry["breakers"].get(key, _CLOSED_DEFAULT),
            }
            for entry in self.entries
        ]

    def config_states(self) -> list[dict]:
        """Each live instance's config status, named by instance."""
        return [{"instance": e["instance"], **e["config"]} for e in self.entries if "config" in e]

    def stale_configs(self) -> list[dict]:
        """The instances serving an older snapshot because a newer version fails to compile."""
        return [state for state in self.config_states() if state.get("stale")]

    def describe(self, target_id: int) -> dict:
        """The most severe state any instance holds (an open breaker anywhere is news)."""
        views = self.per_instance(target_id)
        if not views:
            return dict(_CLOSED_DEFAULT)
        worst = max(views, key=lambda v: (SEVERITY.get(v["state"], 0), v["failure_count"]))
        return {name: worst[name] for name in _CLOSED_DEFAULT}


_recent: tuple[float, Board] | None = None


def recent_board() -> Board:
    """The board, re-read at most every PUBLISH_SECONDS (admin pages show many targets)."""
    global _recent
    now = time.monotonic()
    if _recent is None or now - _recent[0] > PUBLISH_SECONDS:
        _recent = (now, read_board())
    return _recent[1]


def read_board() -> Board:
    """The live instances' entries: Redis when configured, else this process's."""
    if settings.REDIS_URL:
        try:
            raw = sync_redis().hgetall(board_key())
        except Exception as exc:  # the management API stays up while Redis is down
            logger.warning("breaker board unreadable: %s", exc)
            raw = {}
    else:
        with _local_lock:
            raw = dict(_local)
    now = time.time()
    entries = []
    for value in raw.values():
        try:
            entry = json.loads(value)
        except ValueError:
            continue
        if now - entry.get("updated_at", 0) <= STALE_SECONDS:
            entries.append(entry)
    return Board(entries)
