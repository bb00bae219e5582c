"""The control plane's last config on a data plane's disk, for a restart while it is down.

It holds what the data plane got: the document (secrets as `${ENV}` references, API keys
as hashes), the version and the public keys; written atomically (a crash mid-write leaves
the previous copy) and readable by the gateway's user only.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from declarative.data_plane.loaded import LoadedConfig

__all__ = ["load_persisted", "persist"]

logger = logging.getLogger("gateway.data_plane")


def persist(path: str, loaded: LoadedConfig) -> None:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        body = {"version": loaded.version, "document": loaded.document, "jwks": loaded.jwks}
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(body, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError as exc:  # serving matters more than the copy; say so
        logger.warning("could not persist the data-plane config to %s: %s", path, exc)


def load_persisted(path: str) -> LoadedConfig | None:
    """The last persisted config, or None (none yet, or unreadable: said in the log)."""
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
        return LoadedConfig(version=int(body["version"]), document=body["document"], jwks=body.get("jwks"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.error("persisted data-plane config %s is unreadable: %s", path, exc)
        return None
