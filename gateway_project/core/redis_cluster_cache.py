"""django-redis on a Redis Cluster: a connection factory that hands out one RedisCluster.

django-redis ships single-Redis, Sentinel and client-side sharding clients but no Cluster
client. Its DefaultClient only needs a redis-py client object, and redis-py's RedisCluster
routes each key to its slot's node and follows MOVED/ASK, so the factory is all it takes.
Settings select it for `REDIS_CLUSTER=1` (gateway_project.core.redis_topology).
"""

from __future__ import annotations

import threading

from django_redis.pool import ConnectionFactory

from gateway_project.core import redis_topology

__all__ = ["ClusterConnectionFactory"]

_clients: dict[str, object] = {}
_lock = threading.Lock()


class ClusterConnectionFactory(ConnectionFactory):
    """One RedisCluster per seed URL and process (it keeps its own per-node pools)."""

    def connect(self, url: str):
        with _lock:
            client = _clients.get(url)
            if client is None:
                client = _clients[url] = redis_topology.sync_client(
                    redis_topology.parse(url),
                    socket_connect_timeout=self.options.get("SOCKET_CONNECT_TIMEOUT", 1),
                    socket_timeout=self.options.get("SOCKET_TIMEOUT", 1),
                )
            return client

    def disconnect(self, connection) -> None:
        connection.close()
