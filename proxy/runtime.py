"""Everything one gateway process holds for the data plane, created once at startup.

The snapshot, the breakers, the balancer's counters, the upstream client and the Redis
client live here rather than in module globals, so a test can run two independent
gateway instances in one process. What higher layers add (the alert hub of the SSE streams,
their background tasks) is handed in by the wiring (`gateway_project.asgi`): the data plane
imports no app above it (SPEC section 17).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable

from django.conf import settings

from gateway_project.core import breaker_board
from gateway_project.core.clientip import ClientAddressResolver
from proxy.accesslog import AccessLog
from proxy.auth import TokenVerifier
from proxy.balancer import Balancer
from proxy.breaker import BreakerRegistry, BreakerState
from proxy.cache import ResponseCache
from proxy.cors import CorsPolicy
from proxy.idp import ExternalTokenVerifier
from proxy.live import LiveConnections
from proxy.metering import Meter, flush_forever
from proxy.metrics import metrics
from proxy.plugins import PluginLogQueue
from proxy.respond import Responder
from proxy.snapshot import Snapshot
from proxy.snapshot_delta import SnapshotUpdate
from proxy.tracing import span_exporter_from_settings
from proxy.traffic import TrafficRecorder
from proxy.watcher import ControlPlaneWatcher

__all__ = ["BackgroundTask", "Runtime", "active_runtime"]

logger = logging.getLogger("gateway.runtime")

_active: Runtime | None = None
METRICS_FLUSH_SECONDS = 1.0
# Services whose resets and gauges a full install applies per loop turn: at 20,000 services
# applying them at once held the event loop for ~360 ms (make bench-scale).
INSTALL_SLICE_SERVICES = 250
FREEZE_SNAPSHOT_ENTRIES = 50_000
GC_YOUNG_THRESHOLD = 20_000

# (task name, factory): the factory gets the starting runtime and returns the coroutine to run,
# or None when it has nothing to do here (a Redis relay without Redis).
BackgroundTask = tuple[str, Callable[["Runtime"], Awaitable[None] | None]]


def _freeze_startup_heap() -> None:
    """Move everything loaded at startup (Django, DRF, the registry snapshot) out of the
    garbage collector's reach: otherwise every full collection rescans those hundreds of
    thousands of long-lived objects and stalls the event loop for tens of milliseconds."""
    gc.collect()
    gc.freeze()
    # Requests make short-lived cycles (futures, tasks, exceptions): collecting the young
    # generation every 700 allocations (the default) measured ~10% of throughput.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 50)


def _entries(snapshot: Snapshot) -> int:
    return len(snapshot.services_by_prefix) + len(snapshot.tenants) + len(snapshot.api_keys)


def _on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def active_runtime() -> Runtime | None:
    """The runtime serving this process (health endpoints and the management API read it)."""
    return _active


class Runtime:
    def __init__(
        self, alert_hub=None, background: Iterable[BackgroundTask] = (), watcher_factory=ControlPlaneWatcher
    ) -> None:
        """`watcher_factory(runtime)` keeps the snapshot current: the database's watcher, or
        a data plane's (its config file or control plane), chosen by the wiring."""
        from tenancy.keys import key_ring
        from tenancy.revocation import revoked_tokens

        self.snapshot = Snapshot(version=-1)
        self._installing: asyncio.Task | None = None
        self.control_plane_ok = False
        self.draining = False
        self.ready = False
        self.metrics = metrics
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.breakers = BreakerRegistry()
        self.breakers.on_change = self._breaker_changed
        self.balancer = Balancer(self.breakers, metrics)
        self.traffic = TrafficRecorder()
        self.access_log = AccessLog(settings.ACCESS_LOG)
        self.span_exporter = span_exporter_from_settings()
        self.respond = Responder(metrics, self.traffic, self.access_log, self.span_exporter)
        self.plugin_logs = PluginLogQueue(metrics)  # log hooks run after the response (SPEC 19)
        self.meter = self.respond.meter = Meter(self.instance)
        self.cors = CorsPolicy(settings.CORS_ORIGINS)
        self.client_ips = ClientAddressResolver(settings.TRUSTED_PROXIES)
        self.token_verifier = TokenVerifier(
            key_ring(),
            settings.JWT_ISSUER,
            settings.JWT_AUDIENCE,
            settings.JWT_LEEWAY_SECONDS,
            metrics,
        )
        self.revoked_tokens = revoked_tokens
        self.external_tokens = ExternalTokenVerifier(self)
        self.api_key_usage: dict[int, float] = {}
        self.upstream = None
        self.redis = None
        self.redis_pipe = None
        self._pubsub_redis = None
        self.limiter = None
        self.watcher = watcher_factory(self)
        self.live = LiveConnections(self)
        self.alert_hub = alert_hub  # the SSE streams' hub (alerts.hub.AlertHub), or None
        self._background_factories = list(background)
        self._background: list[asyncio.Task] = []
        self._started: asyncio.Future | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def ensure_started(self) -> None:
        """Start once, on lifespan startup or (servers without lifespan) on first request."""
        if self.ready:
            return
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        global _active
        self.loop = asyncio.get_running_loop()
        from proxy.ratelimit import RateLimiter
        from proxy.upstream import create_upstream_client

        self.upstream = create_upstream_client(settings.UPSTREAM_CLIENT, settings.UPSTREAM_POOL_SIZE)
        if settings.REDIS_URL:
            from gateway_project.core import redis_topology
            from proxy.redis_pipe import open_pipe

            topology = redis_topology.current()  # single, Sentinel or Cluster (SPEC section 21)
            self.redis = redis_topology.async_client(
                topology, socket_connect_timeout=0.5, socket_timeout=0.5, health_check_interval=30
            )
            self.redis_pipe = open_pipe(topology)
        self.limiter = RateLimiter(self)
        self.response_cache = ResponseCache(self.redis_pipe, settings.CACHE_KEY_PREFIX)
        await self.watcher.start()
        _freeze_startup_heap()
        self._background.append(asyncio.create_task(self.access_log.run(), name="access-log"))
        self._background.append(asyncio.create_task(self.live.run(), name="live-connections"))
        self._background.append(asyncio.create_task(self._publish_board(), name="instance-board"))
        self._background.append(asyncio.create_task(self._flush_metrics(), name="metrics-flush"))
        self._background.append(asyncio.create_task(flush_forever(self), name="usage-flush"))
        for name, factory in self._background_factories:
            coroutine = factory(self)
            if coroutine is not None:
                self._background.append(asyncio.create_task(coroutine, name=name))
        _active = self
        self.ready = True
        logger.info("data plane ready", extra={"config_version": self.snapshot.version})

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(METRICS_FLUSH_SECONDS)
            self.metrics.flush()

    async def _publish_board(self) -> None:
        """This instance's breakers and config status on the shared board, so the control
        plane shows them; the config lag gauge moves with the same clock."""
        while True:
            now = time.time()
            config = self.watcher.status
            self.metrics.config_lag.set(config.lag_seconds(now))
            entry = breaker_board.encode(self.instance, self.breakers.noteworthy(), config.published(now))
            if self.redis is None:
                breaker_board.publish_local(self.instance, entry)
            else:
                try:
                    await self.redis.hset(breaker_board.board_key(), self.instance, entry)
                except Exception as exc:  # the data plane never depends on the board
                    logger.debug("breaker board publish failed: %s", exc)
            await asyncio.sleep(breaker_board.PUBLISH_SECONDS)

    async def _withdraw_breakers(self) -> None:
        breaker_board.withdraw_local(self.instance)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.hdel(breaker_board.board_key(), self.instance)

    async def shutdown(self) -> None:
        global _active
        if self._started is None:
            return
        for task in [*self._background, self._installing]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.watcher.stop()
        await self._withdraw_breakers()
        self.access_log.close()
        if self.span_exporter is not None:
            await asyncio.to_thread(self.span_exporter.close)  # flushes what is still batched
        if self.upstream is not None:
            await self.upstream.close()
        for client in (self.redis, self._pubsub_redis):
            if client is not None:
                await client.aclose()
        if self.redis_pipe is not None:
            await self.redis_pipe.close()
        await self.external_tokens.close()
        if _active is self:
            _active = None

    def drain(self) -> None:
        """Shutdown began: close SSE streams now (uvicorn would otherwise wait on them forever)."""
        self.draining = True
        if self.alert_hub is not None:
            self.alert_hub.close_all()

    def redis_pubsub_client(self):
        """A separate client without a read timeout: a subscription waits indefinitely."""
        if self._pubsub_redis is None:
            from gateway_project.core import redis_topology

            self._pubsub_redis = redis_topology.async_client(
                redis_topology.current(),
                socket_connect_timeout=1,
                socket_timeout=None,
                socket_keepalive=True,
                health_check_interval=15,
            )
        return self._pubsub_redis

    async def lifespan(self, scope, receive, send) -> None:
        """ASGI lifespan: uvicorn and granian call it; daphne starts us on the first request."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.ensure_started()
                except Exception as exc:
                    logger.exception("data plane failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- snapshot swaps ----------------------------------------------------------------

    def install(self, snapshot: Snapshot) -> None:
        """Swap the snapshot (one reference assignment), then apply staff resets and gauges:
        at once for a small registry, else a slice per loop turn, so requests keep flowing."""
        self.snapshot = snapshot
        self.metrics.config_version.set(snapshot.version)
        if self._installing is not None:
            self._installing.cancel()
            self._installing = None
        if len(snapshot.services_by_prefix) <= INSTALL_SLICE_SERVICES or not _on_a_loop():
            marks = {t.id: t.breaker_reset_at for s in snapshot.services for t in s.targets}
            self.breakers.apply_resets(marks)
            for service in snapshot.services:
                self._target_gauges(service)
        else:
            self._installing = asyncio.get_running_loop().create_task(self._install_in_slices(snapshot))
        logger.info("config installed", extra={"config_version": snapshot.version})

    async def _install_in_slices(self, snapshot: Snapshot) -> None:
        """Resets and gauges of a large snapshot; each slice reads the entries current then,
        so a delta installed meanwhile is never overwritten by an older entry."""
        keep = {t.id for s in snapshot.services for t in s.targets}
        self.breakers.apply_reset_changes({}, self.breakers.known_targets() - keep)
        prefixes = list(snapshot.services_by_prefix)
        for start in range(0, len(prefixes), INSTALL_SLICE_SERVICES):
            await asyncio.sleep(0)
            current = self.snapshot.services_by_prefix
            services = [s for p in prefixes[start : start + INSTALL_SLICE_SERVICES] if (s := current.get(p))]
            marks = {t.id: t.breaker_reset_at for s in services for t in s.targets}
            self.breakers.apply_reset_changes(marks, ())
            for service in services:
                self._target_gauges(service)
        self._installing = None

    def install_update(self, update: SnapshotUpdate) -> None:
        """Install what the watcher produced; a delta refreshes only the services it touched,
        so applying one change on the event loop costs that change, not the registry."""
        self.metrics.snapshot_bytes.set(update.size_bytes)
        self.metrics.config_updates.labels("full" if update.full else "delta").inc()
        if update.full:
            self.install(update.snapshot)
            if _entries(update.snapshot) >= FREEZE_SNAPSHOT_ENTRIES:
                # As at start-up: a million long-lived objects out of the collector's reach, or
                # every full collection rescans them (about a second at 100,000 API keys). Not
                # for small registries: cyclic garbage alive at that moment is kept for good.
                gc.freeze()
            return
        self.snapshot = update.snapshot
        marks = {t.id: t.breaker_reset_at for s in update.services for t in s.targets}
        self.breakers.apply_reset_changes(marks, update.removed_targets)
        self.metrics.config_version.set(update.snapshot.version)
        for service in update.services:
            self._target_gauges(service)
        logger.info(
            "config delta installed",
            extra={"config_version": update.snapshot.version, "config_changes": update.changes},
        )

    def _target_gauges(self, service) -> None:
        gauge = BreakerState.GAUGE_VALUE
        for target in service.targets:
            self.metrics.service_health.labels(service.slug, target.label).set(1 if target.healthy else 0)
            if target.enabled:  # a sample for every enabled target, closed until it trips
                state = self.breakers.describe(target.id)["state"]
                self.metrics.circuit_breaker_state.labels(service.slug, target.label).set(gauge[state])

    def _breaker_changed(self, breaker, previous: str) -> None:
        service, _, target = breaker.key.partition("/")
        self.metrics.circuit_breaker_state.labels(service, target).set(
            BreakerState.GAUGE_VALUE[breaker.state]
        )
