"""One reading of `REDIS_URL` (SPEC section 21) and every Redis client built from it.

A deployment names a single Redis (`redis://`, `rediss://`), a Sentinel group
(`redis+sentinel://host:26379,host:26380/mymaster/0`, or `REDIS_SENTINELS` and
`REDIS_SENTINEL_MASTER`) or a Redis Cluster (`REDIS_CLUSTER=1` with seed nodes,
`redis://host:7000,host:7001`, kept as `redis+cluster://...`). Settings normalise the
variables into one URL, so child processes and tests pass a single string; every client
(control-plane and data-plane redis-py clients, the limiter's RESP pipe, django-redis,
channels-redis, Celery's broker) is built from the `RedisTopology` parsed here, and a
client that cannot work on a topology fails at startup with ImproperlyConfigured instead
of silently talking to the wrong thing.

This module reads no Django settings at import time: settings.py imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs, quote, unquote

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "CLUSTER",
    "SENTINEL",
    "SINGLE",
    "RedisTopology",
    "async_client",
    "cache_settings",
    "celery_broker",
    "channel_layer_settings",
    "current",
    "normalise_url",
    "parse",
    "sync_client",
]

SINGLE = "single"
SENTINEL = "sentinel"
CLUSTER = "cluster"

_SCHEMES = {
    "redis": (SINGLE, False),
    "rediss": (SINGLE, True),
    "redis+sentinel": (SENTINEL, False),
    "rediss+sentinel": (SENTINEL, True),
    "redis+cluster": (CLUSTER, False),
    "rediss+cluster": (CLUSTER, True),
}
_DEFAULT_PORTS = {SINGLE: 6379, SENTINEL: 26379, CLUSTER: 6379}


@dataclass(frozen=True)
class RedisTopology:
    """Where Redis is: `nodes` are the server (single), the sentinels or the cluster seeds."""

    kind: str
    url: str
    nodes: tuple[tuple[str, int], ...]
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False

    def connection_kwargs(self) -> dict:
        """Credentials and TLS for a data node (master, replica or cluster node)."""
        kwargs = {"username": self.username, "password": self.password}
        if self.tls:
            kwargs["ssl"] = True
        return kwargs

    def sentinel_kwargs(self, timeout: float) -> dict:
        kwargs = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def describe(self) -> str:
        """The topology without credentials, for logs and error messages."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.nodes)
        if self.kind == SENTINEL:
            return f"sentinel group {self.master!r} via {hosts} (db {self.db})"
        if self.kind == CLUSTER:
            return f"cluster seeded by {hosts}"
        return f"redis at {hosts} (db {self.db})"


# --- parsing ------------------------------------------------------------------------------


def _split_host(entry: str, default_port: int, url_for_errors: str) -> tuple[str, int]:
    entry = entry.strip()
    if entry.startswith("["):  # [::1]:6379
        host, _, rest = entry[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = entry.partition(":")
    if not host:
        raise ImproperlyConfigured(f"REDIS_URL {redact(url_for_errors)!r} names a node without a host")
    try:
        return host, int(port_text) if port_text else default_port
    except ValueError:
        raise ImproperlyConfigured(f"REDIS_URL {redact(url_for_errors)!r}: bad port in {entry!r}") from None


def _parse_db(text: str, url: str) -> int:
    try:
        return int(text or 0)
    except ValueError:
        raise ImproperlyConfigured(
            f"REDIS_URL {redact(url)!r}: the database must be a number, not {text!r}"
        ) from None


def parse(url: str) -> RedisTopology:
    """The topology named by a (normalised) REDIS_URL; ImproperlyConfigured says what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        known = ", ".join(f"{name}://" for name in _SCHEMES)
        raise ImproperlyConfigured(f"REDIS_URL {redact(url)!r}: unknown scheme; use one of {known}")
    kind, tls = _SCHEMES[scheme]
    location, _, query_text = rest.partition("?")
    netloc, _, path = location.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts, userinfo = netloc, ""
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    nodes = tuple(
        _split_host(entry, _DEFAULT_PORTS[kind], url) for entry in hosts.split(",") if entry.strip()
    )
    if not nodes:
        raise ImproperlyConfigured(f"REDIS_URL {redact(url)!r} names no host")
    if kind == SINGLE and len(nodes) > 1:
        raise ImproperlyConfigured(
            f"REDIS_URL {redact(url)!r} names several hosts: set REDIS_CLUSTER=1 for a cluster, "
            "or use redis+sentinel://sentinel1:26379,sentinel2:26379/<master name>/<db> for Sentinel"
        )
    segments = [segment for segment in path.split("/") if segment]
    master = ""
    if kind == SENTINEL:
        if not segments:
            raise ImproperlyConfigured(
                f"REDIS_URL {redact(url)!r}: a Sentinel URL names the master group: "
                "redis+sentinel://host:26379,host:26380/mymaster/0"
            )
        master, segments = segments[0], segments[1:]
    db = _parse_db(segments[0] if segments else "0", url)
    if kind == CLUSTER and db:
        raise ImproperlyConfigured(f"REDIS_URL {redact(url)!r}: a Redis Cluster has only database 0")
    query = parse_qs(query_text)
    sentinel_password = query.get("sentinel_password", [None])[0]
    return RedisTopology(
        kind=kind,
        url=url,
        nodes=nodes,
        master=master,
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_password=sentinel_password,
        tls=tls,
    )


def normalise_url(url: str, *, cluster: bool = False, sentinels: str = "", sentinel_master: str = "") -> str:
    """Fold REDIS_CLUSTER / REDIS_SENTINELS / REDIS_SENTINEL_MASTER into one REDIS_URL string."""
    if sentinels or sentinel_master:
        if not (sentinels and sentinel_master):
            raise ImproperlyConfigured("REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both")
        if cluster:
            raise ImproperlyConfigured("REDIS_CLUSTER and REDIS_SENTINELS exclude each other: pick one")
        base = parse(url) if url else None
        scheme = "rediss+sentinel" if base is not None and base.tls else "redis+sentinel"
        auth = _userinfo(base.username, base.password) if base is not None else ""
        db = base.db if base is not None else 0
        return f"{scheme}://{auth}{sentinels.replace(' ', '')}/{sentinel_master}/{db}"
    if cluster:
        if not url:
            raise ImproperlyConfigured(
                "REDIS_CLUSTER=1 needs seed nodes in REDIS_URL (redis://host:7000,host:7001)"
            )
        scheme, _, rest = url.partition("://")
        if scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
            raise ImproperlyConfigured(
                f"REDIS_CLUSTER=1 with REDIS_URL {redact(url)!r}: use redis:// seed nodes"
            )
        url = f"{scheme.removesuffix('+cluster')}+cluster://{rest}"
    if url:
        parse(url)  # fail at startup, not at the first request
    return url


def _userinfo(username: str | None, password: str | None) -> str:
    if not password:
        return f"{quote(username)}@" if username else ""
    return f"{quote(username or '')}:{quote(password)}@"


def redact(url: str) -> str:
    """The URL with its password replaced, for messages."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{hosts}{slash}{path}"


@lru_cache(maxsize=8)
def _parsed(url: str) -> RedisTopology:
    return parse(url)


def current() -> RedisTopology | None:
    """The topology of settings.REDIS_URL (None without Redis)."""
    from django.conf import settings

    return _parsed(settings.REDIS_URL) if settings.REDIS_URL else None


# --- redis-py clients ---------------------------------------------------------------------


def sync_client(topology: RedisTopology, **options):
    """A blocking redis-py client that follows the topology (master_for / RedisCluster)."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster
    from redis.sentinel import Sentinel

    return _client(topology, options, redis.Redis, Sentinel, RedisCluster, ClusterNode)


def async_client(topology: RedisTopology, **options):
    """An asyncio redis-py client that follows the topology."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.sentinel import Sentinel

    return _client(topology, options, aioredis.Redis, Sentinel, RedisCluster, ClusterNode)


def _client(topology: RedisTopology, options: dict, redis_class, sentinel_class, cluster_class, node_class):
    """One recipe for both flavours of redis-py (their classes take the same arguments)."""
    if topology.kind == SENTINEL:
        timeout = options.get("socket_connect_timeout") or 1
        sentinel = sentinel_class(
            list(topology.nodes),
            sentinel_kwargs=topology.sentinel_kwargs(timeout),
            db=topology.db,
            **topology.connection_kwargs(),
        )
        return sentinel.master_for(topology.master, **options)
    if topology.kind == CLUSTER:
        options.pop("health_check_interval", None)  # RedisCluster does not take it
        return cluster_class(
            startup_nodes=[node_class(host, port) for host, port in topology.nodes],
            **topology.connection_kwargs(),
            **options,
        )
    return redis_class.from_url(topology.url, **options)


# --- Django cache, channel layer, Celery --------------------------------------------------


def cache_settings(topology: RedisTopology, key_prefix: str) -> dict:
    """CACHES["default"] (django-redis) for the topology; login limits use this cache too."""
    options = {
        "SOCKET_CONNECT_TIMEOUT": 1,
        "SOCKET_TIMEOUT": 1,
        # A cache outage must never turn into a 500 on the control plane.
        "IGNORE_EXCEPTIONS": True,
    }
    location = topology.url
    if topology.kind == SENTINEL:
        # Only the master: replicas lag, and login limits must count every attempt.
        location = [f"redis://{topology.master}/{topology.db}?is_master=1"]
        options.update(
            CLIENT_CLASS="django_redis.client.SentinelClient",
            CONNECTION_FACTORY="django_redis.pool.SentinelConnectionFactory",
            SENTINELS=list(topology.nodes),
            SENTINEL_KWARGS=topology.sentinel_kwargs(1),
        )
        if topology.password:
            options["PASSWORD"] = topology.password
    elif topology.kind == CLUSTER:
        location = [topology.url]  # a list: django-redis would split the seed list at its commas
        options["CONNECTION_FACTORY"] = "gateway_project.core.redis_cluster_cache.ClusterConnectionFactory"
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": location,
        "KEY_PREFIX": key_prefix,
        "OPTIONS": options,
    }


def channel_layer_settings(topology: RedisTopology, key_prefix: str, override_url: str = "") -> dict:
    """CHANNEL_LAYERS["default"]; channels-redis knows single Redis and Sentinel, not Cluster."""
    if override_url:
        topology = parse(override_url)
    if topology.kind == CLUSTER:
        raise ImproperlyConfigured(
            "channels-redis cannot use a Redis Cluster: set CHANNEL_LAYER_URL to a single Redis "
            "or a Sentinel group (redis://... or redis+sentinel://...) next to REDIS_CLUSTER=1"
        )
    host: dict | str = topology.url
    if topology.kind == SENTINEL:
        host = {
            "sentinels": list(topology.nodes),
            "master_name": topology.master,
            "sentinel_kwargs": topology.sentinel_kwargs(1),
            "db": topology.db,
            **{k: v for k, v in topology.connection_kwargs().items() if v is not None},
        }
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [host], "prefix": f"{key_prefix}:asgi"},
    }


def celery_broker(topology: RedisTopology) -> tuple[str, dict]:
    """(broker URL, transport options) for kombu: redis:// or sentinel://; no Cluster transport."""
    if topology.kind == CLUSTER:
        raise ImproperlyConfigured(
            "Celery's Redis transport (kombu) cannot use a Redis Cluster: set CELERY_BROKER_URL to a "
            "single Redis, a Sentinel group (sentinel://host:26379;sentinel://host:26380) or another "
            "broker next to REDIS_CLUSTER=1"
        )
    if topology.kind == SINGLE:
        return topology.url, {}
    auth = _userinfo(topology.username, topology.password)
    urls = ";".join(f"sentinel://{auth}{host}:{port}/{topology.db}" for host, port in topology.nodes)
    options = {"master_name": topology.master}
    if topology.sentinel_password:
        options["sentinel_kwargs"] = {"password": topology.sentinel_password}
    return urls, options
