"""Redis at scale (SPEC section 21): a Sentinel group losing its master under load, and a
3-master Redis Cluster shared by two gateway instances.

Every redis-server (data node or sentinel) runs on a free loopback port in this test's temp
directory, is started by a fixture and stopped by its own PID; the shared Redis on 6379 is
never touched. Figures (failover gap, counts per status) are printed for the note.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import httpx
import pytest

from bench.redis_cluster import assign_slots, cluster_node_port
from proxy.redis_pipe import key_slot
from tests.alerts.conftest import SseReader
from tests.conftest import require
from tests.live import free_port, wait_until
from tests.reliability.conftest import post_alert, rate_policy, routable

STREAM = "/api/v1/alerts/stream"
START_SECONDS = 10
MASTER_NAME = "gwmaster"
# Sentinel declares the master down after this long; failover follows within about a second.
DOWN_AFTER_MS = 1000
FOLLOW_PROMOTED_SECONDS = 5
PROPAGATION_SECONDS = 1.0

pytestmark = [pytest.mark.redis, pytest.mark.slow]


# --- redis-server processes started and stopped by PID ----------------------------------


@dataclass
class RedisProcess:
    """One redis-server (a data node or, with a config file, a sentinel) on its own port."""

    directory: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def start(self, *args: str, config: str | None = None) -> RedisProcess:
        command = [shutil.which("redis-server")]
        if config is not None:
            command += [config, "--sentinel"]
        command += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory]
        if config is None:
            # No persistence; a replica syncs at once instead of after the 5 s diskless delay.
            command += ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        command += list(args)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, START_SECONDS, message=f"redis-server on {self.port} to answer")
        return self

    def _answers(self) -> bool:
        import redis

        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server on {self.port} exited with {self.process.returncode}")
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=2)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def redis_processes(tmp_path):
    """Start RedisProcess instances in this test's temp dir; every one is killed at teardown."""
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    started: list[RedisProcess] = []

    def start(*args: str, name: str, config_lines: list[str] | None = None) -> RedisProcess:
        directory = tmp_path / name
        directory.mkdir()
        node = RedisProcess(str(directory))
        if "--cluster-enabled" in args:
            node.port = cluster_node_port()
        started.append(node)
        config = None
        if config_lines is not None:
            config = str(directory / "sentinel.conf")  # sentinel rewrites it: a file of its own
            with open(config, "w") as handle:
                handle.write("\n".join(config_lines) + "\n")
        return node.start(*args, config=config)

    yield start
    for node in started:
        node.kill()


# --- Sentinel ---------------------------------------------------------------------------


@dataclass
class SentinelGroup:
    master: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def master_port_announced(self) -> int | None:
        for sentinel in self.sentinels:
            try:
                reply = sentinel.client().execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
            except Exception:
                continue
            if reply:
                return int(reply[1])
        return None


@pytest.fixture
def sentinel_group(redis_processes):
    """One master, one replica and three sentinels (quorum 2), all on loopback."""
    master = redis_processes(name="master")
    replica = redis_processes("--replicaof", "127.0.0.1", str(master.port), name="replica")
    wait_until(
        lambda: replica.client().info("replication").get("master_link_status") == "up",
        START_SECONDS,
        message="the replica to sync",
    )
    lines = [
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 2",
        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {MASTER_NAME} 10000",
        f"sentinel parallel-syncs {MASTER_NAME} 1",
    ]
    sentinels = [redis_processes(name=f"sentinel{i}", config_lines=lines) for i in range(3)]

    def sentinels_agree() -> bool:
        for sentinel in sentinels:
            client = sentinel.client()
            if len(client.execute_command("SENTINEL", "sentinels", MASTER_NAME)) < 2:
                return False
            if not client.execute_command("SENTINEL", "replicas", MASTER_NAME):
                return False
        return True

    wait_until(sentinels_agree, START_SECONDS, interval=0.2, message="the sentinels to find each other")
    return SentinelGroup(master, replica, sentinels)


def limiter_keys(node: RedisProcess, prefix: str) -> list[bytes]:
    return node.client().keys(f"{prefix}:rl:*")


def counts(outcomes) -> dict[str, int]:
    return dict(collections.Counter(str(o.status) for o in outcomes))


def test_sentinel_failover_under_load_follows_the_promoted_master(
    gateway_processes, make_service, upstream, tenant_user, sentinel_group, settings, load
):
    # Given: two gateways and this control plane on a Sentinel group, a fail-open and a
    # fail-closed rate-limited service under steady load, an SSE client on gateway A.
    settings.REDIS_URL = sentinel_group.url
    prefix = settings.CACHE_KEY_PREFIX
    rate_policy(make_service("sales", targets=[upstream.url]), "sales-open", "open")
    rate_policy(make_service("payments", targets=[upstream.url]), "payments-closed", "closed")
    _, _, token = tenant_user("acme")
    gateway_a = gateway_processes(REDIS_URL=sentinel_group.url)
    gateway_b = gateway_processes(REDIS_URL=sentinel_group.url)
    base = gateway_a.url
    load.add("open", f"{base}/api/v1/sales/x", threads=2, pause=0.01)
    load.add("closed", f"{base}/api/v1/payments/x", threads=2, pause=0.01)
    reader = SseReader(f"{base}{STREAM}", {"Authorization": f"Bearer {token}"})
    before = post_alert(gateway_b.url, token, "before the failover")
    assert before.status_code == 201
    assert reader.next()["id"] == before.json()["event_id"]
    wait_until(lambda: limiter_keys(sentinel_group.master, prefix), 5, message="limits on the master")
    time.sleep(0.5)

    # When: the master dies.
    sentinel_group.master.kill()
    killed = time.monotonic()
    during = []
    for index in range(2):
        response = post_alert(gateway_b.url, token, f"during the failover {index}")
        assert response.status_code == 201, response.text  # the database is the log
        during.append(response.json()["event_id"])

    # Then: the sentinels promote the replica, and the gateway uses it within 5 s.
    wait_until(
        lambda: sentinel_group.master_port_announced() == sentinel_group.replica.port,
        10,
        interval=0.05,
        message="the sentinels to promote the replica",
    )
    promoted = time.monotonic()
    wait_until(
        lambda: any(o.status == 200 for o in load.between(killed, time.monotonic(), "closed")),
        FOLLOW_PROMOTED_SECONDS,
        interval=0.05,
        message="the fail-closed service to admit again through the promoted master",
    )
    first_admitted = min(
        o.started + o.elapsed for o in load.between(killed, time.monotonic(), "closed") if o.status == 200
    )
    assert first_admitted - promoted < FOLLOW_PROMOTED_SECONDS
    assert limiter_keys(sentinel_group.replica, prefix), "the limiter is not writing to the promoted master"

    # Config propagation and alert fan-out resume; nothing published during the gap is lost.
    changed = time.monotonic()
    make_service("inventory", targets=[upstream.url])
    for gateway in (gateway_a, gateway_b):
        wait_until(
            lambda g=gateway: routable(g.url, "inventory"), 5, interval=0.1, message="config to propagate"
        )
    propagated = time.monotonic() - changed
    after = post_alert(gateway_b.url, token, "after the failover")
    assert after.status_code == 201
    received = [reader.next(10)["id"] for _ in range(len(during) + 1)]
    assert sorted(received) == sorted([*during, after.json()["event_id"]])
    time.sleep(0.5)
    load.stop()
    reader.close()

    outcomes = load.outcomes
    gap = [o for o in load.between(killed, first_admitted, "closed")]
    figures = {
        "sentinel_promotion_s": round(promoted - killed, 2),
        "promoted_master_in_use_s_after_kill": round(first_admitted - killed, 2),
        "promoted_master_in_use_s_after_promotion": round(first_admitted - promoted, 2),
        "config_propagation_after_failover_s": round(propagated, 2),
        "fail_closed_during_gap": counts(gap),
        "fail_open_all": counts(load.of("open")),
        "fail_closed_all": counts(load.of("closed")),
    }
    print("\nSENTINEL FAILOVER FIGURES", json.dumps(figures))
    assert all(o.status is not None for o in outcomes), [o.error for o in outcomes if o.status is None][:3]
    assert not [o for o in outcomes if o.status == 500], "a 500 during the failover"
    assert {o.status for o in load.of("open")} == {200}, "fail-open must keep admitting"
    assert {(o.status, o.code) for o in gap if o.status != 200} <= {(503, "SERVICE_UNAVAILABLE")}
    assert any(o.status == 503 for o in gap), "fail-closed admitted while no master was known"
    assert {o.status for o in load.of("closed")} <= {200, 503}
    assert max(o.elapsed for o in outcomes) < 3, "a request hung during the failover"


# --- Cluster ----------------------------------------------------------------------------

CLUSTER_MASTERS = 3
TENANT_LIMIT = 25


@dataclass
class RedisCluster:
    nodes: list[RedisProcess]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def node_id(self, node: RedisProcess) -> str:
        return node.client().execute_command("CLUSTER", "MYID").decode()

    def owner(self, slot: int) -> RedisProcess:
        for start, end, master, *_ in self.nodes[0].client().execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(master[1]))
        raise LookupError(slot)

    def keys(self, pattern: str) -> dict[int, list[bytes]]:
        return {n.port: n.client().keys(pattern) for n in self.nodes}

    def begin_migration(self, slot: int, source: RedisProcess, target: RedisProcess) -> None:
        """CLUSTER SETSLOT IMPORTING / MIGRATING: from now on the source answers ASK for
        keys it no longer holds (Redis Cluster spec, "Live resharding")."""
        target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))

    def move_keys(self, slot: int, source: RedisProcess, target: RedisProcess) -> None:
        client = source.client()
        keys = client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)

    def finish_migration(self, slot: int, target: RedisProcess) -> None:
        """The slot belongs to the target on every node: clients now get MOVED."""
        owner = self.node_id(target)
        for node in self.nodes:
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", owner)


@pytest.fixture
def redis_cluster(redis_processes):
    """Three cluster-enabled masters on loopback, slots spread by `redis-cli --cluster create`."""
    require(shutil.which("redis-cli") is not None, "redis-cli is not installed")
    nodes = [
        redis_processes("--cluster-enabled", "yes", "--cluster-node-timeout", "2000", name=f"cluster{i}")
        for i in range(CLUSTER_MASTERS)
    ]
    assign_slots([node.port for node in nodes])
    return RedisCluster(nodes)


def send_concurrently(urls: list[str], headers: dict[str, str], threads: int = 16) -> list[httpx.Response]:
    """Every URL once, from `threads` clients at the same time."""
    from concurrent.futures import ThreadPoolExecutor

    def fetch(url: str) -> httpx.Response:
        return httpx.get(url, headers=headers, timeout=10)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fetch, urls))


def test_cluster_limits_stay_exact_across_shards_and_a_live_reshard(
    redis_cluster, gateway_processes, make_service, upstream, tenant_user, settings
):
    # Given: two gateways on a 3-master Cluster; "sales" has a tenant policy (the tenant's
    # {hash tag}) and an IP policy (its own tag), and the tenant is one whose tag lives on
    # another master than the IP's, so each request touches two shards.
    settings.REDIS_URL = redis_cluster.url
    prefix = settings.CACHE_KEY_PREFIX
    sales = make_service("sales", targets=[upstream.url], auth_required=True)
    rate_policy(sales, "sales-tenant", "closed", limit=TENANT_LIMIT, scope="tenant")
    rate_policy(sales, "sales-ip", "closed", limit=10_000, scope="ip")
    ip_owner = redis_cluster.owner(key_slot("ip:127.0.0.1"))
    slug = next(
        s
        for s in (f"acme{i}" for i in range(100))
        if redis_cluster.owner(key_slot(f"tenant:{s}")) is not ip_owner
    )
    _, _, token = tenant_user(slug)
    extra = {
        "REDIS_URL": redis_cluster.url,
        "CHANNEL_LAYER_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        "CELERY_BROKER_URL": "filesystem://localhost/",
    }
    gateways = [gateway_processes(**extra) for _ in range(2)]
    headers = {"Authorization": f"Bearer {token}"}

    # When: 80 requests from 16 clients spread over both gateways.
    urls = [f"{gateways[i % 2].url}/api/v1/sales/x" for i in range(80)]
    responses = send_concurrently(urls, headers)

    # Then: exactly the tenant's limit is admitted, and the refused requests took nothing
    # from the IP policy either (its slot's records were taken back).
    statuses = collections.Counter(r.status_code for r in responses)
    assert statuses == {200: TENANT_LIMIT, 429: 80 - TENANT_LIMIT}, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "sales-tenant" in refused.headers["RateLimit-Policy"]
    by_node = redis_cluster.keys(f"{prefix}:rl:*")
    assert sum(1 for keys in by_node.values() if keys) == 2, f"one request, two shards: {by_node}"
    ip_key = next(k for keys in by_node.values() for k in keys if b"sales-ip" in k)
    ip_node = redis_cluster.owner(key_slot(ip_key))
    assert ip_node.client().zcard(ip_key) == TENANT_LIMIT

    # When: a second tenant's key slot is resharded to another master while that tenant
    # sends requests (ASK while its keys move, MOVED once the slot is the target's).
    _, _, other_token = tenant_user("globex")
    other = {"Authorization": f"Bearer {other_token}"}
    first = send_concurrently(urls[:10], other, threads=4)
    tenant_key = next(
        k for keys in redis_cluster.keys(f"{prefix}:rl:*").values() for k in keys if b"globex" in k
    )
    slot = key_slot(tenant_key)
    source = redis_cluster.owner(slot)
    target = next(n for n in redis_cluster.nodes if n is not source)
    redis_cluster.begin_migration(slot, source, target)
    during = send_concurrently(urls[10:20], other, threads=4)
    redis_cluster.move_keys(slot, source, target)
    migrated = send_concurrently(urls[20:30], other, threads=4)
    redis_cluster.finish_migration(slot, target)
    after = send_concurrently(urls[30:60], other, threads=8)

    # Then: no request failed on the redirects and the tenant's limit stayed exact.
    globex = first + during + migrated + after
    phases = {
        name: dict(collections.Counter(r.status_code for r in batch))
        for name, batch in (("before", first), ("migrating", during), ("asked", migrated), ("moved", after))
    }
    print("\nCLUSTER RESHARD PHASES", json.dumps(phases))
    assert collections.Counter(r.status_code for r in globex) == {200: TENANT_LIMIT, 429: 60 - TENANT_LIMIT}
    assert target.client().zcard(tenant_key) == TENANT_LIMIT
    assert source.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0


def within_a_second(condition, message: str) -> float:
    """Seconds until `condition()` holds (asserted under 1 s, with the margin of a loaded machine)."""
    started = time.monotonic()
    wait_until(condition, PROPAGATION_SECONDS + 0.5, interval=0.02, message=message)
    return round(time.monotonic() - started, 3)


def test_cluster_carries_changes_revocations_purges_resets_and_alerts_between_instances(
    redis_cluster, gateway_processes, make_service, upstream, tenant_user, settings
):
    from rest_framework.authtoken.models import Token

    from tenancy.models import User
    from tenancy.tokens import tokens_for_user

    # Given: two gateways and this control plane on the Cluster, a cached service, a dead
    # target, a staff API token, and an SSE client on gateway A.
    settings.REDIS_URL = redis_cluster.url
    _, member, token = tenant_user("acme")
    staff = User.objects.create_user(
        "cluster-staff", password="staff-pass-123", is_staff=True, is_superuser=True
    )
    staff_auth = {"Authorization": f"Token {Token.objects.create(user=staff).key}"}
    cached = make_service("catalog", targets=[upstream.url], cache_ttl=60)
    dead = make_service("dead", targets=[f"http://127.0.0.1:{free_port()}"], retries=0).targets.get()
    extra = {
        "REDIS_URL": redis_cluster.url,
        "CHANNEL_LAYER_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        "CELERY_BROKER_URL": "filesystem://localhost/",
    }
    gateway_a, gateway_b = (gateway_processes(**extra) for _ in range(2))
    reader = SseReader(f"{gateway_a.url}{STREAM}", {"Authorization": f"Bearer {token}"})
    figures = {}

    # A service created here is routed by both instances.
    make_service("inventory", targets=[upstream.url])
    figures["config_change_s"] = within_a_second(
        lambda: routable(gateway_a.url, "inventory") and routable(gateway_b.url, "inventory"),
        "the new service on both instances",
    )

    # A purge through A's management API empties B's cached entry.
    catalog = {"Host": "api.gateway.example"}
    httpx.get(f"{gateway_a.url}/api/v1/catalog/items", headers=catalog)
    assert httpx.get(f"{gateway_b.url}/api/v1/catalog/items", headers=catalog).headers["x-cache"] == "HIT"
    purge = httpx.post(f"{gateway_a.url}/api/manage/services/{cached.pk}/purge-cache/", headers=staff_auth)
    assert purge.status_code in (200, 202, 204), purge.text
    figures["cache_purge_s"] = within_a_second(
        lambda: (
            httpx.get(f"{gateway_b.url}/api/v1/catalog/items", headers=catalog).headers["x-cache"] == "MISS"
        ),
        "B to drop the purged entry",
    )

    # A breaker opened on B by real traffic is reset through A's management API.
    statuses = [httpx.get(f"{gateway_b.url}/api/v1/dead/x").status_code for _ in range(7)]
    assert statuses[:5] == [502] * 5 and set(statuses[5:]) == {503}
    reset = httpx.post(f"{gateway_a.url}/api/manage/circuit-breakers/{dead.pk}/reset/", headers=staff_auth)
    assert reset.status_code == 200, reset.text
    figures["breaker_reset_s"] = within_a_second(
        lambda: httpx.get(f"{gateway_b.url}/api/v1/dead/x").status_code == 502, "B's breaker to close"
    )

    # An alert published through B reaches A's stream.
    published = post_alert(gateway_b.url, token, "over the cluster")
    assert published.status_code == 201
    assert reader.next(PROPAGATION_SECONDS + 0.5)["id"] == published.json()["event_id"]
    reader.close()

    # A logout through A revokes the access token on B.
    tokens = tokens_for_user(member)
    member_auth = {"Authorization": f"Bearer {tokens['access']}"}
    assert httpx.get(f"{gateway_b.url}/api/v1/alerts", headers=member_auth).status_code == 200
    logout = httpx.post(
        f"{gateway_a.url}/api/v1/auth/logout", json={"refresh": tokens["refresh"]}, headers=member_auth
    )
    assert logout.status_code in (200, 204), logout.text
    figures["revocation_s"] = within_a_second(
        lambda: httpx.get(f"{gateway_b.url}/api/v1/alerts", headers=member_auth).status_code == 401,
        "B to refuse the revoked token",
    )
    print("\nCLUSTER PROPAGATION FIGURES", json.dumps(figures))


# --- the control plane's clients: django-redis (login limits) and the channel layer -------


def login_statuses(address: str) -> list[int]:
    from rest_framework.test import APIClient

    client = APIClient(REMOTE_ADDR=address)
    body = {"email": "nobody@example.com", "password": "wrong"}
    return [client.post("/api/v1/auth/login", body, format="json").status_code for _ in range(6)]


def use_topology(settings, url: str, channel_layer_url: str = "") -> None:
    """Point this process's cache (login limits) and channel layer at a topology, the way
    settings.py does from REDIS_URL."""
    from gateway_project.core import redis_topology

    topology = redis_topology.parse(url)
    settings.REDIS_URL = url
    settings.CACHES = {"default": redis_topology.cache_settings(topology, settings.CACHE_KEY_PREFIX)}
    settings.CHANNEL_LAYERS = {
        "default": redis_topology.channel_layer_settings(
            topology, settings.CACHE_KEY_PREFIX, channel_layer_url
        )
    }


def channel_layer_round_trip() -> dict:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()

    async def round_trip():
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "topology.check", "text": "hello"})
        return await layer.receive(channel)

    return async_to_sync(round_trip)()


def test_login_limits_and_the_channel_layer_on_sentinel(sentinel_group, settings, transactional_db):
    use_topology(settings, sentinel_group.url)
    assert login_statuses("10.21.0.1") == [401] * 5 + [429]
    assert sentinel_group.master.client().dbsize() > 0, "nothing counted on the master"
    assert channel_layer_round_trip()["text"] == "hello"


def test_login_limits_on_the_cluster_and_the_refused_channel_layer(redis_cluster, settings, transactional_db):
    from django.core.exceptions import ImproperlyConfigured

    shared = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    use_topology(settings, redis_cluster.url, channel_layer_url=shared)
    assert login_statuses("10.21.0.2") == [401] * 5 + [429]
    assert sum(node.client().dbsize() for node in redis_cluster.nodes) > 0, "nothing counted on the cluster"
    assert channel_layer_round_trip()["text"] == "hello"
    with pytest.raises(ImproperlyConfigured, match="CHANNEL_LAYER_URL"):
        use_topology(settings, redis_cluster.url)
