"""A data plane's watcher: the snapshot from its config source, never from a database.

It is the database watcher (`proxy.watcher.ControlPlaneWatcher`: config status, revocations
over Redis, traffic for the dashboard) with another way to get the config. A new config is
parsed, validated and compiled off the event loop; one that fails keeps the last good
snapshot serving, counts `gateway_config_errors_total` once and shows as `config_stale`
naming the bad value, like a bad save on a database-fed gateway (SPEC sections 16, 18).
A source that is away (file missing, control plane down) changes nothing; at startup
without it, a data plane following a control plane serves the config it persisted.
"""

from __future__ import annotations

import asyncio
import logging

from declarative.data_plane.loaded import LoadedConfig
from declarative.data_plane.sources import SourceUnavailable, source_from_settings
from declarative.document import ConfigFileError, parse_document
from declarative.standalone import compile_document
from proxy.snapshot import CompileError, Snapshot
from proxy.watcher import ControlPlaneWatcher

__all__ = ["ConfigSourceWatcher", "data_plane_watcher"]

logger = logging.getLogger("gateway.data_plane")


def data_plane_watcher(runtime) -> ConfigSourceWatcher:
    """The watcher factory the wiring hands the runtime on a data plane."""
    return ConfigSourceWatcher(runtime, source_from_settings())


def _compile(loaded: LoadedConfig) -> Snapshot:
    document = loaded.document if loaded.document is not None else parse_document(loaded.raw)
    return compile_document(document, loaded.version)


class ConfigSourceWatcher(ControlPlaneWatcher):
    def __init__(self, runtime, source) -> None:
        super().__init__(runtime)
        self.source = source
        self._source_failing = False

    async def start(self) -> None:
        self._wake = asyncio.Event()
        await self.refresh(force=True)
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="config-poll"))
        self._tasks.append(asyncio.create_task(self.source.watch(self._wake.set), name="config-source"))
        if self.runtime.redis is not None:  # revocations (and a harmless wake on config bumps)
            self._tasks.append(asyncio.create_task(self._subscribe_loop(), name="config-pubsub"))

    async def stop(self) -> None:
        await super().stop()
        close = getattr(self.source, "close", None)
        if close is not None:
            await close()

    async def refresh(self, force: bool = False) -> None:
        try:
            loaded = await self.source.fetch(force)
        except SourceUnavailable as exc:
            self._source_away(exc)
            if not self.runtime.snapshot.loaded:
                await self._serve_persisted()
            return
        if self.source.problem:  # the long poll says the control plane is away
            self._source_away(self.source.problem)
        else:
            self._source_back()
        if loaded is not None:
            await self._install(loaded)

    async def _install(self, loaded: LoadedConfig) -> bool:
        self._saw(loaded.version)
        try:
            snapshot = await asyncio.to_thread(_compile, loaded)
        except (ConfigFileError, CompileError) as exc:
            self.config_refused(loaded.version, exc, getattr(exc, "subject", ""))
            return False
        if loaded.jwks and loaded.jwks.get("keys"):
            from tenancy.keys import ring_from_jwks

            self.runtime.token_verifier.use_key_ring(ring_from_jwks(loaded.jwks))
        self.runtime.install(snapshot)
        self.source.applied(loaded)
        self._applied(snapshot.version)
        return True

    async def _serve_persisted(self) -> None:
        persisted = await asyncio.to_thread(self.source.persisted)
        if persisted is not None and await self._install(persisted):
            logger.warning(
                "config source %s unavailable: serving persisted config version %s",
                self.source.description,
                persisted.version,
            )

    def _source_away(self, exc: Exception | str) -> None:
        if not self._source_failing:
            logger.error("config source unavailable, serving the last config: %s", exc)
        self._source_failing = True
        self.runtime.control_plane_ok = False

    def _source_back(self) -> None:
        if self._source_failing:
            logger.warning("config source %s reachable again", self.source.description)
        self._source_failing = False
        self.runtime.control_plane_ok = True

    async def _flush_api_key_usage(self) -> None:
        """Last-used times live in the control plane's database; a data plane drops them."""
        self.runtime.api_key_usage = {}
