"""Keeps an instance in step with the control plane, off the request path.

Config: Redis pub/sub wakes the watcher the moment a save is committed anywhere; a
version poll (Redis, or the database without Redis) catches anything a lost message
missed. A version that fails to compile (a value written past validation) leaves the last
good snapshot serving and the instance ready; `status` then says which object failed and
how long this instance has been behind, for the health views, the dashboard and the admin
(published on the instance board by the runtime), and the next good save recovers it
(SPEC section 16). Revocations: pub/sub plus a periodic re-read of the revoked set. API-key usage:
last-used times are written in batches, never once per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from django.conf import settings

from gateway_project.core.broadcast import listen, prefixed
from proxy.snapshot_delta import SnapshotUpdater
from registry.config_version import CONFIG_CHANNEL, VERSION_KEY

__all__ = ["ConfigStatus", "ControlPlaneWatcher"]

logger = logging.getLogger("gateway.watcher")

REDIS_POLL_SECONDS = 1.0
# Even with Redis, ask the database now and then: a bump made while Redis was down
# never reached its shared copy.
DATABASE_RECHECK_SECONDS = 5.0
REVOCATION_RESYNC_SECONDS = 5.0
API_KEY_USAGE_FLUSH_SECONDS = 30.0
TRAFFIC_RETENTION_SECONDS = 20 * 60
_RECONNECT_MAX_SECONDS = 5.0
# A version that failed to compile fails the same way until someone saves again (which
# moves the version and retries at once): re-reading the whole registry every poll would
# only load the database.
FAILED_VERSION_RETRY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ConfigStatus:
    """This instance's config as staff should see it; replaced whole, never mutated, so a
    thread reading it gets one consistent value."""

    applied_version: int = -1
    newest_version: int = -1  # the newest version this instance has seen announced
    behind_since: float | None = None  # epoch seconds since it saw a version it has not applied
    error: str = ""  # "service 3 (sales): ValueError: ..." while a version fails to compile
    failing_version: int | None = None

    @property
    def stale(self) -> bool:
        return bool(self.error)

    def lag_seconds(self, now: float) -> float:
        return 0.0 if self.behind_since is None else max(0.0, now - self.behind_since)

    def published(self, now: float) -> dict:
        """The JSON-ready form the instance board carries."""
        return {
            "applied_version": self.applied_version,
            "newest_version": self.newest_version,
            "lag_seconds": round(self.lag_seconds(now), 3),
            "stale": self.stale,
            "error": self.error or None,
            "failing_version": self.failing_version,
        }


class ControlPlaneWatcher:
    def __init__(self, runtime) -> None:
        self.runtime = runtime
        # One thread for every ORM call the data plane makes: one connection, never on the loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="control-plane")
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._db_failing = False
        self._last_usage_flush = time.monotonic()
        self._next_database_check = 0.0
        self.status = ConfigStatus()
        self._retry_failed_at = 0.0
        self.updater = SnapshotUpdater()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        listen(CONFIG_CHANNEL, lambda _message: loop.call_soon_threadsafe(self._wake.set))
        await self.refresh(force=True)
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="config-poll"))
        if self.runtime.redis is not None:
            self._tasks.append(asyncio.create_task(self._subscribe_loop(), name="config-pubsub"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._flush_api_key_usage()
        await self.run_in_db_thread(_close_connections)
        self._executor.shutdown(wait=False)

    async def run_in_db_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, _with_fresh_connection, function, *args
        )

    # --- config -------------------------------------------------------------------------

    async def refresh(self, force: bool = False) -> None:
        """Rebuild the snapshot if the version moved; keep the old one if the database is down
        or the new version does not compile."""
        from proxy.snapshot import CompileError

        try:
            version = await self._read_version()
            self._saw(version)
            if not force and not self._due(version):
                return
            # A delta when the change log allows it, else the full rebuild (SPEC section 23).
            update = await self.run_in_db_thread(self.updater.next, self.runtime.snapshot, force, version)
        except CompileError as exc:
            self._reachable()
            self._compile_failed(exc, version)
            return
        except Exception as exc:
            if not self._db_failing:
                logger.error("config refresh failed; serving the last snapshot: %s", exc)
            self._db_failing = True
            self.runtime.control_plane_ok = False
            return
        self._reachable()
        snapshot = update.snapshot
        self.runtime.install_update(update)
        self._applied(snapshot.version)
        if version > snapshot.version:
            await self._correct_shared_version(snapshot.version)

    def _due(self, version: int) -> bool:
        """A version not served yet, unless it already failed and its retry is not due."""
        if version == self.runtime.snapshot.version:
            return False
        return version != self.status.failing_version or time.monotonic() >= self._retry_failed_at

    def _saw(self, version: int) -> None:
        status = self.status
        if version <= max(status.newest_version, status.applied_version):
            return
        since = status.behind_since if status.behind_since is not None else time.time()
        self.status = replace(status, newest_version=version, behind_since=since)

    def _reachable(self) -> None:
        if self._db_failing:
            logger.warning("config refresh recovered")
        self._db_failing = False
        self.runtime.control_plane_ok = True

    def _compile_failed(self, exc, version: int) -> None:
        failing = exc.version if exc.version is not None else version
        self._retry_failed_at = time.monotonic() + FAILED_VERSION_RETRY_SECONDS
        self.config_refused(failing, exc, exc.subject)

    def config_refused(self, failing: int, exc: Exception, subject: str = "") -> None:
        """Keep serving; say once per failing version what broke it (`subject`: the object),
        and count it. Also a data plane's way to refuse a config file (declarative/)."""
        if failing != self.status.failing_version:
            logger.error(
                "config version %s does not compile, serving version %s: %s",
                failing,
                self.runtime.snapshot.version,
                exc,
                extra={"config_version": failing, "config_object": subject},
            )
            self.runtime.metrics.config_errors.inc()
        since = self.status.behind_since if self.status.behind_since is not None else time.time()
        self.status = replace(
            self.status,
            newest_version=max(self.status.newest_version, failing),
            behind_since=since,
            error=str(exc),
            failing_version=failing,
        )

    def _applied(self, version: int) -> None:
        if self.status.stale:
            logger.warning("config version %s compiled; config is current again", version)
        self.status = ConfigStatus(applied_version=version, newest_version=version)
        self.runtime.metrics.config_lag.set(0)

    async def _correct_shared_version(self, version: int) -> None:
        """Redis held a version ahead of the database (the database was restored or reset):
        the database wins, or every instance would rebuild its snapshot on every poll."""
        if self.runtime.redis is None:
            return
        try:
            await self.runtime.redis.set(prefixed(VERSION_KEY), version)
        except Exception as exc:
            logger.debug("could not correct the shared config version: %s", exc)

    async def _read_version(self) -> int:
        redis = self.runtime.redis
        now = time.monotonic()
        if redis is not None and now < self._next_database_check:
            try:
                raw = await redis.get(prefixed(VERSION_KEY))
                if raw is not None:
                    return int(raw)
            except Exception as exc:
                logger.debug("redis version read failed, asking the database: %s", exc)
        from registry.config_version import current_config_version

        self._next_database_check = now + DATABASE_RECHECK_SECONDS
        return await self.run_in_db_thread(current_config_version)

    async def _poll_loop(self) -> None:
        interval = REDIS_POLL_SECONDS if self.runtime.redis is not None else settings.CONFIG_POLL_SECONDS
        next_revocation_sync = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            self._wake.clear()
            await self.refresh()
            now = time.monotonic()
            if self.runtime.redis is not None and now >= next_revocation_sync:
                next_revocation_sync = now + REVOCATION_RESYNC_SECONDS
                await self._sync_revocations()
            if now - self._last_usage_flush >= API_KEY_USAGE_FLUSH_SECONDS:
                await self._flush_api_key_usage()
            if self.runtime.redis is not None:
                await self._share_traffic()

    async def _subscribe_loop(self) -> None:
        from tenancy.revocation import REVOKED_CHANNEL

        config_channel = prefixed(CONFIG_CHANNEL).encode()
        revoked_channel = prefixed(REVOKED_CHANNEL).encode()
        delay = 0.2
        while True:
            pubsub = self.runtime.redis_pubsub_client().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(config_channel, revoked_channel)
                delay = 0.2
                self._wake.set()  # anything published while we were away is picked up by a poll
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    if message["channel"] == revoked_channel:
                        self._apply_revocation(message["data"])
                    else:
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("config subscription lost, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    # --- revocations ----------------------------------------------------------------------

    def _apply_revocation(self, data: bytes) -> None:
        jti, _, expires = data.decode().partition(" ")
        try:
            self.runtime.revoked_tokens.add(jti, float(expires))
        except ValueError:
            logger.warning("ignored malformed revocation message")

    async def _sync_revocations(self) -> None:
        from tenancy.revocation import REVOKED_SET

        try:
            entries = await self.runtime.redis.zrangebyscore(
                prefixed(REVOKED_SET), time.time(), "+inf", withscores=True
            )
        except Exception as exc:
            logger.debug("revocation resync failed: %s", exc)
            return
        self.runtime.revoked_tokens.merge({jti.decode(): score for jti, score in entries})

    # --- traffic for the dashboard ----------------------------------------------------------

    async def _share_traffic(self) -> None:
        from proxy.traffic import redis_key

        closed = self.runtime.traffic.closed_buckets()
        if not closed:
            return
        try:
            async with self.runtime.redis.pipeline(transaction=False) as pipe:
                for start, services in closed.items():
                    key = redis_key(settings.CACHE_KEY_PREFIX, start)
                    for service, counts in services.items():
                        for index, count in enumerate(counts):
                            if count:
                                pipe.hincrby(key, f"{service}:{index}", count)
                    pipe.expire(key, TRAFFIC_RETENTION_SECONDS)
                await pipe.execute()
        except Exception as exc:
            logger.debug("could not share traffic counters: %s", exc)

    # --- API-key usage ----------------------------------------------------------------------

    async def _flush_api_key_usage(self) -> None:
        self._last_usage_flush = time.monotonic()
        usage, self.runtime.api_key_usage = self.runtime.api_key_usage, {}
        if not usage:
            return
        try:
            await self.run_in_db_thread(_write_api_key_usage, usage)
        except Exception as exc:
            logger.warning("could not record API-key usage: %s", exc)


def _with_fresh_connection(function, *args):
    from django.db import close_old_connections

    close_old_connections()  # drop a connection the database closed while we slept
    return function(*args)


def _close_connections() -> None:
    from django.db import connections

    connections.close_all()


def _write_api_key_usage(usage: dict[int, float]) -> None:
    from datetime import UTC, datetime

    from registry.models import ApiKey

    for key_id, used_at in usage.items():
        # .update() on purpose: usage is not a config change and must not bump the version.
        ApiKey.objects.filter(pk=key_id).update(last_used_at=datetime.fromtimestamp(used_at, UTC))
