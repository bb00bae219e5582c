"""Redis at scale (SPEC section 21): a Sentinel group losing its master under load, and a
3-master Redis Cluster shared by two gateway instances.

Every redis-server (data node or sentinel) runs on a free loopback port in this test's temp
directory, is started by a fixture and stopped by its own PID; the shared Redis on 6379 is
never touched. Figures (failover gap, counts per status) are printed for the note.
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.alerts.conftest import SseReader
from tests.conftest import require
from tests.live import free_port, wait_until

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


def rate_policy(service, name: str, fail_mode: str, limit: int = 100_000, scope: str = "ip") -> None:
    from registry.models import RatePolicy

    RatePolicy.objects.create(
        name=name, scope=scope, service=service, limit=limit, window_seconds=60, fail_mode=fail_mode
    )


def post_alert(base: str, token: str, message: str) -> httpx.Response:
    return httpx.post(
        f"{base}/api/v1/alerts",
        json={"severity": "critical", "message": message},
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )


def routable(base: str, prefix: str) -> bool:
    return httpx.get(f"{base}/api/v1/{prefix}/x", timeout=5).status_code == 200


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
