"""Where a data plane's config comes from: `file:///path/gateway.yaml` or a control plane.

A source answers two questions: has the config changed (`watch` wakes the watcher as soon
as it has) and what is it now (`fetch`, None when nothing is new). Both kinds hand over a
`LoadedConfig`; parsing and validation are the watcher's, so a bad file and a bad push are
refused the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import httpx

from declarative.data_plane import constants
from declarative.data_plane.loaded import LoadedConfig
from declarative.data_plane.persisted import load_persisted, persist

__all__ = ["ControlPlaneSource", "FileSource", "LoadedConfig", "SourceUnavailable", "source_from_settings"]

logger = logging.getLogger("gateway.data_plane")


class SourceUnavailable(Exception):
    """The file cannot be read or the control plane cannot be reached: keep serving."""


class FileSource:
    """A YAML or JSON file; each new content gets the next version number of this process."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.version = 0
        self._digest: str | None = None
        self._read_signature: tuple | None = None
        self.description = f"file://{path}"
        self.problem: str | None = None  # a file that cannot be read raises at each fetch instead

    def _signature(self) -> tuple | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    async def watch(self, wake: Callable[[], None]) -> None:
        """Wake the watcher when the file's size, mtime or inode moves (an edit, a rename)."""
        seen = self._signature()
        while True:
            await asyncio.sleep(constants.FILE_CHECK_SECONDS)
            signature = self._signature()
            if signature != seen:
                seen = signature
                wake()

    async def fetch(self, force: bool = False) -> LoadedConfig | None:
        """The file, when it changed since it was last read (a stat first: the watcher asks
        every poll, and a large file is not read for nothing)."""
        signature = self._signature()
        if not force and signature is not None and signature == self._read_signature:
            return None
        try:
            raw = await asyncio.to_thread(self.path.read_bytes)
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        self._read_signature = signature
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._digest and not force:
            return None
        if digest != self._digest:
            self._digest, self.version = digest, self.version + 1
        return LoadedConfig(version=self.version, raw=raw)

    def persisted(self) -> LoadedConfig | None:
        return None  # the file is its own persistence

    def applied(self, loaded: LoadedConfig) -> None:
        """Nothing to remember: the file is still there."""


class ControlPlaneSource:
    """A control plane that announces each new config version through a long poll (a push
    within LONG_POLL_CHECK_SECONDS); the data plane then fetches the config. The long poll
    also tells the control plane this data plane is alive and which version it serves."""

    def __init__(self, base_url: str, token: str, name: str, state_file: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.description = self.base_url
        self.name = name
        self.state_file = state_file
        self.announced = -1  # the newest version the control plane announced
        self.known = -1  # the newest version fetched (served, or refused as invalid)
        self.serving = -1  # the version this data plane serves
        self.problem: str | None = None  # why the last long poll failed, until one succeeds
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(
                constants.CONTROL_PLANE_READ_TIMEOUT, connect=constants.CONTROL_PLANE_CONNECT_TIMEOUT
            ),
            follow_redirects=False,
        )

    async def watch(self, wake: Callable[[], None]) -> None:
        delay = constants.RECONNECT_MIN_SECONDS
        while True:
            try:
                version = await self._wait_for_version()
            except (httpx.HTTPError, SourceUnavailable, ValueError, KeyError) as exc:
                logger.debug("control plane long poll failed, retrying in %.1fs: %s", delay, exc)
                self.problem = f"control plane {self.base_url}: {exc or type(exc).__name__}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, constants.RECONNECT_MAX_SECONDS)
                continue
            delay = constants.RECONNECT_MIN_SECONDS
            self.problem = None
            if version != self.known:  # newer, or the control plane's database moved back
                self.announced = version
                wake()

    async def _wait_for_version(self) -> int:
        params = {"after": self.known, "serving": self.serving, "name": self.name}
        response = await self._client.get(self.base_url + constants.CLUSTER_VERSION_PATH, params=params)
        _raise_for_status(response)
        return int(response.json()["version"])

    async def fetch(self, force: bool = False) -> LoadedConfig | None:
        if not force and self.announced == self.known:
            return None
        try:
            response = await self._client.get(
                self.base_url + constants.CLUSTER_CONFIG_PATH, params={"name": self.name}
            )
            _raise_for_status(response)
            body = response.json()
            loaded = LoadedConfig(
                version=int(body["version"]), document=body["document"], jwks=body.get("jwks")
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise SourceUnavailable(f"control plane {self.base_url}: {exc}") from exc
        self.known = loaded.version
        return loaded

    def persisted(self) -> LoadedConfig | None:
        return load_persisted(self.state_file)

    def applied(self, loaded: LoadedConfig) -> None:
        """Serving it now: remember it on disk for a restart while the control plane is down."""
        self.serving = loaded.version
        if loaded.document is not None:
            persist(self.state_file, loaded)

    async def close(self) -> None:
        await self._client.aclose()


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise SourceUnavailable(f"HTTP {response.status_code} from {response.request.url.path}")


def source_from_settings():
    """The source GATEWAY_CONFIG_SOURCE names (settings already checked its form)."""
    from django.conf import settings

    from gateway_project.core.gateway_role import config_source_kind, file_source_path

    source = settings.GATEWAY_CONFIG_SOURCE
    if config_source_kind(source) == "file":
        return FileSource(file_source_path(source))
    return ControlPlaneSource(
        source,
        settings.GATEWAY_CLUSTER_TOKEN,
        settings.GATEWAY_DATA_PLANE_NAME or _default_name(),
        settings.DATA_PLANE_STATE_FILE,
    )


def _default_name() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"
