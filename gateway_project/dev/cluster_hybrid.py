"""`make cluster-hybrid` (CLUSTER_MODE=hybrid): one control plane and N data planes (SPEC 18).

The same processes as `make cluster`, with other roles: the gateway instances behind the
front become data planes (GATEWAY_ROLE=data_plane, no DATABASE_URL, their config pushed by
the control plane), and one more gateway, the control plane, serves the admin, the
management API and logins on its own port, with the Celery worker and beat beside it.
"""

from __future__ import annotations

__all__ = [
    "CLUSTER_TOKEN_FILE",
    "CONTROL_PLANE",
    "HYBRID",
    "MODES",
    "child_environment",
    "control_plane_port",
    "control_plane_url",
    "data_plane_names",
]

TRADITIONAL, HYBRID = "traditional", "hybrid"
MODES = (TRADITIONAL, HYBRID)
CONTROL_PLANE = "control-plane"
CLUSTER_TOKEN_FILE = "cluster_token"
# Children that read and write the registry: the control plane's environment in hybrid mode.
_CONTROL_PLANE_CHILDREN = (CONTROL_PLANE, "worker", "beat")
_DATA_PLANE_PREFIX = "gateway-"
# What a data plane must not have: it runs without a database (SPEC section 18).
_DATA_PLANE_DROPS = ("DATABASE_URL", "CELERY_BROKER_URL")


def control_plane_port(config) -> int:
    """The port after the data planes' (CLUSTER_BASE_PORT + CLUSTER_INSTANCES)."""
    return config.base_port + config.instances


def control_plane_url(config) -> str:
    return config.instance_url(control_plane_port(config))


def data_plane_names(config) -> list[str]:
    return [f"{_DATA_PLANE_PREFIX}{index}" for index in range(1, config.instances + 1)]


def child_environment(config, env: dict[str, str], name: str) -> dict[str, str]:
    """`name`'s environment: unchanged in traditional mode; by role in hybrid mode."""
    if config.mode != HYBRID:
        return env
    if name in _CONTROL_PLANE_CHILDREN:
        return {**env, "GATEWAY_ROLE": "control_plane"}
    if name.startswith(_DATA_PLANE_PREFIX):
        data_plane = {key: value for key, value in env.items() if key not in _DATA_PLANE_DROPS}
        data_plane.update(
            GATEWAY_ROLE="data_plane",
            GATEWAY_CONFIG_SOURCE=control_plane_url(config),
            GATEWAY_DATA_PLANE_NAME=name,
            DATA_PLANE_STATE_FILE=str(config.var_dir / f"{name}-config.json"),
        )
        return data_plane
    return env
