"""What a gateway process is (SPEC section 18): `GATEWAY_ROLE` and where its config comes from.

- `traditional`: today's gateway; the registry in a database, every door served.
- `control_plane`: the same, and it also serves the data-plane config to data planes
  (`/api/manage/cluster/config`) and lists them (`/api/manage/data-planes/`).
- `data_plane`: no database at all; the data-plane doors, health and metrics, served from
  `GATEWAY_CONFIG_SOURCE` (`file:///path/gateway.yaml` or a control plane's URL).
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlsplit

__all__ = ["FILE_SCHEME", "REMOTE_SCHEMES", "GatewayRole", "config_source_kind", "file_source_path"]

FILE_SCHEME = "file"
REMOTE_SCHEMES = ("http", "https")


class GatewayRole(StrEnum):
    TRADITIONAL = "traditional"
    CONTROL_PLANE = "control_plane"
    DATA_PLANE = "data_plane"


def config_source_kind(source: str) -> str:
    """`file` or `remote`; raises ValueError naming what is accepted."""
    scheme = urlsplit(source).scheme
    if scheme == FILE_SCHEME and file_source_path(source):
        return "file"
    if scheme in REMOTE_SCHEMES and urlsplit(source).netloc:
        return "remote"
    raise ValueError(
        f"GATEWAY_CONFIG_SOURCE={source!r}: expected file:///path/gateway.yaml or http(s)://control-plane"
    )


def file_source_path(source: str) -> str:
    """`file:///etc/gateway/gateway.yaml` -> `/etc/gateway/gateway.yaml`."""
    return urlsplit(source).path
