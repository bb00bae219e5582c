"""`make cluster` (gateway_project.dev.cluster): two instances behind a round-robin front."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from fixtures.demo_data import ADMIN_PASSWORD, DEMO_PASSWORD
from fixtures.demo_ports import demo_port_map
from gateway_project.dev import cluster
from tests.conftest import require
from tests.live import demo_admin_session, wait_until
from tests.test_demo_upstream import free_port_block
from tests.test_devrun import (
    INHERITED_TEST_SETTINGS,
    OutputReader,
    group_alive,
    living_members,
    port_is_free,
)

BASE_DIR = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 40
STATUS_REQUESTS = 6
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_SERVER = "redis://127.0.0.1:6379/0"
REDIS_TEST_DB = 13  # this test's own Redis database: its Celery queue meets no other worker
SPOOFED_CLIENT = "203.0.113.9"


def postgres_server_url() -> str:
    """The PostgreSQL server of DATABASE_URL (CI) or the local default, maintenance db."""
    url = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(url if url.startswith(cluster.POSTGRES_SCHEMES) else POSTGRES_SERVER)
    return urlunsplit(parts._replace(path=f"/{cluster.MAINTENANCE_DATABASE}"))


def redis_test_url() -> str:
    url = os.environ.get("REDIS_URL") or REDIS_SERVER
    return urlunsplit(urlsplit(url)._replace(path=f"/{REDIS_TEST_DB}"))


def unreachable(check, url: str) -> str | None:
    try:
        check(url)
    except cluster.CannotStart as exc:
        return str(exc)
    return None


def postgres_unreachable(url: str) -> str | None:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=cluster.STORE_TIMEOUT_SECONDS).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {cluster.redact(url)} is unreachable: {exc}"
    return None


@pytest.fixture
def cluster_database():
    """A database of its own for one cluster run (the cluster creates it), dropped after."""
    import psycopg
    from psycopg import sql

    server = postgres_server_url()
    problem = postgres_unreachable(server)
    require(problem is None, problem or "")
    name = f"gateway_cluster_test_{os.getpid()}"
    yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    with psycopg.connect(server, autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        conn.execute(drop)


@pytest.fixture
def cluster_redis():
    """(REDIS_URL, key prefix) for one run; its keys and Celery queue are removed after."""
    import redis

    url = redis_test_url()
    problem = unreachable(cluster.check_redis, url)
    require(problem is None, problem or "")
    prefix = f"gwcluster{os.getpid()}"
    yield url, prefix
    client = redis.Redis.from_url(url)
    for pattern in (f"{prefix}:*", "celery*", "_kombu.*", "unacked*"):
        for key in client.scan_iter(match=pattern):
            client.delete(key)
    client.close()


def fresh_get(url: str, **kwargs) -> httpx.Response:
    """One request on its own connection, so a per-connection front also rotates."""
    return httpx.get(url, timeout=10, trust_env=False, **kwargs)


def admin_pages_through(front: str) -> list[int]:
    """Log in to the admin through the front, then fetch /admin/ twice on fresh connections."""
    with demo_admin_session(front) as client:
        cookies = dict(client.cookies)
    return [fresh_get(f"{front}/admin/", cookies=cookies).status_code for _ in range(2)]


# --- One gateway across instances (issue: reliability, "the cluster") ------------------

PROPAGATION_SECONDS = 1.0
CLUSTER_LIMIT = 10
CLUSTER_ATTEMPTS = 30
READ_ONLY_REASON = "Cluster test: invoice overdue"


def login(instance: str, username: str, password: str) -> dict[str, str]:
    response = httpx.post(
        f"{instance}/api/v1/auth/login",
        json={"username": username, "password": password},
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access']}"}


def toggle_read_only_in_the_admin(admin: httpx.Client, tenant_id: int, reason: str = "") -> None:
    """The changelist action with its confirmation step, as staff click it."""
    response = admin.post(
        "/admin/tenancy/tenant/",
        data={
            "action": "toggle_read_only",
            "_selected_action": [str(tenant_id)],
            "post": "yes",
            "reason": reason,
            "csrfmiddlewaretoken": admin.cookies["csrftoken"],
        },
        headers={"Origin": str(admin.base_url).rstrip("/")},
    )
    assert response.status_code == 302, response.text[:500]


def tenant_id(instance: str, staff: dict[str, str], slug: str) -> int:
    found = httpx.get(
        f"{instance}/api/manage/tenants/", params={"search": slug}, headers=staff, trust_env=False
    ).json()["results"]
    return next(t["id"] for t in found if t["slug"] == slug)


def check_read_only_toggle_crosses_instances(first: str, second: str, owner: dict, staff: dict) -> None:
    """Read-only toggled in the admin of one instance blocks writes on the other within 1 s."""
    write = f"{second}/api/v1/sales/echo"

    def write_status(n: int) -> httpx.Response:
        return httpx.post(write, json={"n": n}, headers=owner, trust_env=False)

    assert write_status(1).status_code == 200
    madrid = tenant_id(first, staff, "bakery-madrid")
    with demo_admin_session(first) as admin:
        toggle_read_only_in_the_admin(admin, madrid, READ_ONLY_REASON)
        wait_until(
            lambda: write_status(2).status_code == 403,
            PROPAGATION_SECONDS,
            message="writes to be refused on the other instance after the admin toggle",
        )
        refused = write_status(3).json()
        assert (refused["code"], refused["detail"]) == ("TENANT_READ_ONLY", READ_ONLY_REASON)
        assert httpx.get(write, headers=owner, trust_env=False).status_code == 200  # reads pass
        toggle_read_only_in_the_admin(admin, madrid)
    wait_until(
        lambda: write_status(4).status_code == 200,
        PROPAGATION_SECONDS,
        message="writes to pass again on the other instance after read-only was lifted",
    )


def policies_applied(instance: str, path: str, headers: dict) -> str:
    return httpx.get(f"{instance}{path}", headers=headers, trust_env=False).headers.get(
        "ratelimit-policy", ""
    )


def check_rate_limit_is_exact_across_instances(first: str, second: str, owner: dict, staff: dict) -> None:
    """A tenant policy created through one instance's API admits exactly N across both."""
    policy = httpx.post(
        f"{first}/api/manage/rate-policies/",
        json={
            "name": "cluster-test",
            "scope": "tenant",
            "service": "inventory",
            "limit": CLUSTER_LIMIT,
            "window_seconds": 3600,
        },
        headers=staff,
        trust_env=False,
    )
    assert policy.status_code == 201, policy.text
    url = "/api/v1/inventory/echo"
    # Probed with another tenant's token, so the probes spend none of bakery-madrid's quota.
    sevilla = login(first, "owner@bakery-sevilla.example", DEMO_PASSWORD)
    for instance in (first, second):
        wait_until(
            lambda instance=instance: "cluster-test" in policies_applied(instance, url, sevilla),
            PROPAGATION_SECONDS,
            message=f"the new policy to apply on {instance}",
        )
    statuses = [
        httpx.get(f"{(first, second)[i % 2]}{url}", headers=owner, trust_env=False).status_code
        for i in range(CLUSTER_ATTEMPTS)
    ]
    assert statuses.count(200) == CLUSTER_LIMIT, statuses
    assert statuses.count(429) == CLUSTER_ATTEMPTS - CLUSTER_LIMIT, statuses


def check_alert_crosses_instances(first: str, second: str, owner: dict, staff: dict) -> None:
    """An alert published on one instance reaches an SSE client of the same tenant on the other."""
    from tests.alerts.conftest import SseReader

    reader = SseReader(f"{second}/api/v1/alerts/stream", owner)
    try:
        assert reader.status == 200
        posted = httpx.post(
            f"{first}/api/v1/alerts",
            json={"severity": "critical", "message": "oven 3 overheating", "tenant": "bakery-madrid"},
            headers=staff,
            trust_env=False,
        )
        assert posted.status_code == 201, posted.text
        event = reader.next(timeout=5)
        assert event["data"]["message"] == "oven 3 overheating"
        assert str(event["id"]) == str(posted.json()["event_id"])
    finally:
        reader.close()


def check_logout_crosses_instances(first: str, second: str) -> None:
    """A logout on one instance rejects the same access token on the other within 1 s."""
    viewer = login(first, "viewer@bakery-madrid.example", DEMO_PASSWORD)
    read = f"{second}/api/v1/sales/echo"
    assert httpx.get(read, headers=viewer, trust_env=False).status_code == 200
    assert httpx.post(f"{first}/api/v1/auth/logout", headers=viewer, trust_env=False).status_code == 204
    wait_until(
        lambda: httpx.get(read, headers=viewer, trust_env=False).status_code == 401,
        PROPAGATION_SECONDS,
        message="the token to be rejected on the other instance after logout",
    )


def check_one_gateway_across_instances(base_port: int) -> None:
    first, second = f"http://127.0.0.1:{base_port}", f"http://127.0.0.1:{base_port + 1}"
    owner = login(first, "owner@bakery-madrid.example", DEMO_PASSWORD)
    staff = login(second, "admin", ADMIN_PASSWORD)
    check_read_only_toggle_crosses_instances(first, second, owner, staff)
    check_rate_limit_is_exact_across_instances(first, second, owner, staff)
    check_alert_crosses_instances(first, second, owner, staff)
    check_logout_crosses_instances(first, second)


def cluster_env(
    tmp_path,
    database: str,
    redis: tuple[str, str],
    upstream_base: int,
    base_port: int,
    front_port: int,
    **extra: str,
) -> dict[str, str]:
    """`make cluster`'s environment for one run: its own stores, var dir and ports."""
    redis_url, prefix = redis
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_TEST_SETTINGS}
    env.update(
        DATABASE_URL=database,
        REDIS_URL=redis_url,
        CACHE_KEY_PREFIX=prefix,
        GATEWAY_VAR_DIR=str(tmp_path / "var"),
        CLUSTER_BASE_PORT=str(base_port),
        CLUSTER_FRONT_PORT=str(front_port),
        DEMO_UPSTREAM_HOST="127.0.0.1",
        DEMO_UPSTREAM_BASE_PORT=str(upstream_base),
        **extra,
    )
    return env


def start_cluster(env: dict[str, str]) -> tuple[subprocess.Popen, OutputReader]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway_project.dev.cluster"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, OutputReader(process)


def stop_cluster(process: subprocess.Popen) -> None:
    """After a test, whatever happened: the cluster stops its children itself."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()  # its children get SIGTERM through PR_SET_PDEATHSIG
            process.wait(5)


@pytest.mark.slow
@pytest.mark.timeout(READY_TIMEOUT_SECONDS + STOP_TIMEOUT_SECONDS + 60)
def test_make_cluster_balances_two_instances_and_ctrl_c_stops_every_child(
    tmp_path, cluster_database, cluster_redis
):
    # Given: free ports, a fresh var dir, its own database and Redis prefix.
    upstream_count = len(demo_port_map(0))
    upstream_base = free_port_block(upstream_count + cluster.DEFAULT_INSTANCES + 1)
    base_port = upstream_base + upstream_count
    front_port = base_port + cluster.DEFAULT_INSTANCES
    env = cluster_env(tmp_path, cluster_database, cluster_redis, upstream_base, base_port, front_port)
    process, output = start_cluster(env)
    front = f"http://127.0.0.1:{front_port}"
    try:
        # When: it is ready.
        ready = output.wait_for(cluster.READY_MARKER, READY_TIMEOUT_SECONDS)
        items = output.wait_for("cluster: pids ", 5).removeprefix("cluster: pids ").split()
        pids = {name: int(pid) for name, pid in (item.split("=") for item in items)}
        assert set(pids) == {"demo-upstream", "gateway-1", "gateway-2", "worker", "beat", "front"}
        assert "admin / admin-demo" in output.text
        assert (tmp_path / "var" / cluster.SECRET_KEY_FILE).stat().st_mode & 0o077 == 0

        # Then: requests through the front alternate between the two gateway processes.
        seen = []
        for _ in range(STATUS_REQUESTS):
            response = fresh_get(f"{front}/api/v1/status")
            assert response.status_code == 200
            seen.append(int(response.json()["instance"].rsplit(":", 1)[1]))
        assert set(seen) == {pids["gateway-1"], pids["gateway-2"]}
        assert all(a != b for a, b in zip(seen, seen[1:], strict=False)), seen

        # And: a login through the front gives a token both instances accept.
        credentials = {"username": "owner@bakery-madrid.example", "password": DEMO_PASSWORD}
        login = httpx.post(f"{front}/api/v1/auth/login", json=credentials, trust_env=False)
        assert login.status_code == 200, login.text
        bearer = {"Authorization": f"Bearer {login.json()['access']}"}
        headers = {**bearer, "X-Forwarded-For": SPOOFED_CLIENT}
        echoes = [fresh_get(f"{front}/api/v1/sales/echo", headers=headers) for _ in range(2)]
        assert [echo.status_code for echo in echoes] == [200, 200]
        assert {echo.json()["path"] for echo in echoes} == {"/echo"}
        for port in (base_port, base_port + 1):
            direct = fresh_get(f"http://127.0.0.1:{port}/api/v1/sales/echo", headers=bearer)
            assert direct.status_code == 200
        if "nginx" in ready:  # the edge replaces a client's X-Forwarded-For
            assert SPOOFED_CLIENT not in echoes[0].json()["headers"]["x-forwarded-for"]

        # And: an admin session made through the front holds on both instances (one
        # SECRET_KEY, sessions in the shared database).
        assert admin_pages_through(front) == [200, 200]

        # And: the two instances act as one gateway: a read-only toggle in one's admin, a rate
        # limit, an alert and a logout all hold on the other.
        check_one_gateway_across_instances(base_port)

        # When: Ctrl-C.
        process.send_signal(signal.SIGINT)

        # Then: it exits cleanly, every child and its helpers are gone, every port is free.
        assert process.wait(STOP_TIMEOUT_SECONDS) == 0
        assert output.wait_for_eof(10), "a descendant still holds the output pipe"
        assert "cluster: stopped" in output.text
        assert not [name for name, pid in pids.items() if group_alive(pid)]
        ports = [front_port, base_port, base_port + 1, *demo_port_map(upstream_base).values()]
        assert [port for port in ports if not port_is_free(port)] == []
    finally:
        stop_cluster(process)


# --- Failing fast ----------------------------------------------------------------------


def config_for(tmp_path, **changes) -> cluster.ClusterConfig:
    base = free_port_block(len(demo_port_map(0)) + 3)
    defaults = dict(
        database_url="postgres://postgres@127.0.0.1:5432/gateway_cluster_unused",
        redis_url=redis_test_url(),
        var_dir=tmp_path,
        base_port=base,
        front_port=base + 2,
        instances=2,
        front="auto",
        upstream_host="127.0.0.1",
        upstream_ports=demo_port_map(base + 3),
    )
    return cluster.ClusterConfig(**{**defaults, **changes})


def test_unreachable_redis_fails_with_a_clear_message_before_starting_anything(tmp_path, capsys, monkeypatch):
    dead_port = free_port_block(1)
    config = config_for(tmp_path, redis_url=f"redis://127.0.0.1:{dead_port}/5")
    started = []
    monkeypatch.setattr(cluster.devrun, "Child", lambda *args, **kwargs: started.append(args))

    assert cluster.run(config, threading.Event()) == 1

    err = capsys.readouterr().err
    assert f"Redis at redis://127.0.0.1:{dead_port}/5 is unreachable" in err
    assert "(set REDIS_URL)" in err
    assert started == []


def test_unreachable_postgres_fails_with_a_clear_message(tmp_path):
    dead_port = free_port_block(1)
    url = f"postgres://postgres:hunter2@127.0.0.1:{dead_port}/gateway_cluster"

    with pytest.raises(cluster.CannotStart) as failure:
        cluster.ensure_database(url)

    message = str(failure.value)
    assert message.startswith(f"PostgreSQL at postgres://postgres:***@127.0.0.1:{dead_port}/")
    assert "hunter2" not in message


def test_a_non_postgres_database_url_is_refused(tmp_path):
    with pytest.raises(cluster.CannotStart, match="must name a PostgreSQL database"):
        cluster.ensure_database(f"sqlite:///{tmp_path}/gateway.sqlite3")


def test_busy_ports_are_reported(tmp_path):
    config = config_for(tmp_path)

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", config.instance_ports[1]))
        holder.listen()
        assert cluster.busy_ports(config) == [f"127.0.0.1:{config.instance_ports[1]}"]


def test_every_child_shares_the_stores_secret_and_var_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("DEBUG", raising=False)
    config = config_for(tmp_path)
    key = cluster.shared_secret_key(tmp_path)

    env = cluster.cluster_environment(config, key)

    assert cluster.shared_secret_key(tmp_path) == key and len(key) >= 50
    assert env["SECRET_KEY"] == key
    assert env["DEBUG"] == "0"
    assert env["GATEWAY_VAR_DIR"] == str(tmp_path)
    assert env["DATABASE_URL"] == config.database_url
    assert env["REDIS_URL"] == env["CELERY_BROKER_URL"] == config.redis_url
    assert env["TRUSTED_PROXIES"] == "127.0.0.1/32"
    names = [name for name, _ in cluster.service_commands(config, ["front"])]
    assert names == ["demo-upstream", "gateway-1", "gateway-2", "worker", "beat", "front"]


# --- The fronts ----------------------------------------------------------------------


def test_the_generated_nginx_config_is_accepted_by_nginx(tmp_path):
    binary = cluster.nginx_binary()
    require(binary is not None, "nginx is not installed")
    config = config_for(tmp_path)

    command = cluster.nginx_command(binary, config)

    assert cluster.nginx_config_error(command) is None
    text = (tmp_path / "nginx" / "nginx.conf").read_text()
    for port in config.instance_ports:
        assert f"server 127.0.0.1:{port};" in text
    assert f"listen 127.0.0.1:{config.front_port};" in text
    assert "daemon off;" in command[-1] and str(tmp_path / "nginx" / "nginx.pid") in command[-1]
    snippet = cluster.NGINX_PROXY_SNIPPET.read_text()
    for directive in (
        "proxy_http_version 1.1;",
        "proxy_buffering off;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
    ):
        assert directive in snippet


async def _named_backend(name: bytes) -> asyncio.Server:
    """A tiny HTTP server that answers every request with its name and closes."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(name), name))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


async def _ask(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: front\r\n\r\n")
    await writer.drain()
    body = (await asyncio.wait_for(reader.read(), 5)).split(b"\r\n\r\n", 1)[1]
    writer.close()
    return body


async def test_the_python_front_rotates_connections_and_skips_a_dead_backend():
    # Given: two live backends and one that refuses connections, behind the Python front.
    first, second = await _named_backend(b"one"), await _named_backend(b"two")
    dead_port = free_port_block(1)
    backends = [("127.0.0.1", s.sockets[0].getsockname()[1]) for s in (first, second)]
    front = cluster.RoundRobinFront([backends[0], ("127.0.0.1", dead_port), backends[1]])
    server = await asyncio.start_server(front.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # When: four clients connect one after another.
        bodies = [await _ask(port) for _ in range(4)]
        # Then: each connection goes to the next backend that accepts.
        assert bodies == [b"one", b"two", b"two", b"one"]
    finally:
        for each in (server, first, second):
            each.close()


def test_the_python_front_runs_as_a_child_and_stops_on_sigterm(tmp_path):
    config = config_for(tmp_path, front="python")
    front = cluster.choose_front(config)
    assert not front.is_nginx
    process = subprocess.Popen(front.command, cwd=BASE_DIR, start_new_session=True)
    try:
        deadline = 50
        while port_is_free(config.front_port) and deadline:
            assert process.poll() is None
            deadline -= 1
            threading.Event().wait(0.1)
        assert not port_is_free(config.front_port)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert not living_members(process.pid)
        assert port_is_free(config.front_port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
