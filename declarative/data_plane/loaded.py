"""One config as a source delivered it, before it is parsed and validated."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LoadedConfig"]


@dataclass(frozen=True)
class LoadedConfig:
    """The file's bytes, or the control plane's document with its version and public keys."""

    version: int
    raw: bytes | None = None
    document: dict | None = None
    jwks: dict | None = None
