"""`make cluster-hybrid`: one control plane and two data planes without a database (SPEC 18)."""

from __future__ import annotations

import signal

import httpx
import pytest

from fixtures.demo_data import ADMIN_PASSWORD, DEMO_PASSWORD
from fixtures.demo_ports import demo_port_map
from gateway_project.dev import cluster, cluster_hybrid
from tests.test_cluster import (  # noqa: F401  (fixtures: the run's own database and Redis)
    READY_TIMEOUT_SECONDS,
    STOP_TIMEOUT_SECONDS,
    check_logout_crosses_instances,
    check_read_only_toggle_crosses_instances,
    cluster_database,
    cluster_env,
    cluster_redis,
    config_for,
    login,
    start_cluster,
    stop_cluster,
)
from tests.test_demo_upstream import free_port_block
from tests.test_devrun import group_alive

DATA_PLANES = 2


def test_hybrid_children_get_their_roles_and_data_planes_no_database(tmp_path):
    config = config_for(tmp_path, mode=cluster_hybrid.HYBRID, front_port=free_port_block(1))
    env = {"DATABASE_URL": "postgres://x/db", "CELERY_BROKER_URL": "redis://x", "SECRET_KEY": "k"}

    names = [name for name, _ in cluster.service_commands(config, ["front"])]
    roles = {name: cluster_hybrid.child_environment(config, env, name) for name in names}

    assert names == ["demo-upstream", "gateway-1", "gateway-2", "control-plane", "worker", "beat", "front"]
    control_plane = f"http://127.0.0.1:{config.base_port + DATA_PLANES}"
    for name in ("gateway-1", "gateway-2"):
        assert "DATABASE_URL" not in roles[name] and "CELERY_BROKER_URL" not in roles[name]
        assert roles[name]["GATEWAY_ROLE"] == "data_plane"
        assert roles[name]["GATEWAY_CONFIG_SOURCE"] == control_plane
        assert roles[name]["GATEWAY_DATA_PLANE_NAME"] == name
    assert {roles[name]["GATEWAY_ROLE"] for name in ("control-plane", "worker", "beat")} == {"control_plane"}
    assert roles["control-plane"]["DATABASE_URL"] == env["DATABASE_URL"]
    assert config.gateway_ports == [*config.instance_ports, config.base_port + DATA_PLANES]


@pytest.mark.slow
@pytest.mark.timeout(READY_TIMEOUT_SECONDS + STOP_TIMEOUT_SECONDS + 60)
def test_make_cluster_hybrid_serves_from_data_planes_that_follow_the_control_plane(
    tmp_path,
    cluster_database,  # noqa: F811
    cluster_redis,  # noqa: F811
):
    # Given: free ports, a fresh var dir, its own database and Redis prefix, hybrid mode.
    upstream_count = len(demo_port_map(0))
    upstream_base = free_port_block(upstream_count + DATA_PLANES + 2)
    base_port = upstream_base + upstream_count
    front_port = base_port + DATA_PLANES + 1
    env = cluster_env(
        tmp_path, cluster_database, cluster_redis, upstream_base, base_port, front_port,
        CLUSTER_MODE="hybrid", CLUSTER_FRONT="python",
    )  # fmt: skip
    process, output = start_cluster(env)
    front = f"http://127.0.0.1:{front_port}"
    control_plane = f"http://127.0.0.1:{base_port + DATA_PLANES}"
    try:
        # When: it is ready.
        output.wait_for(cluster.READY_MARKER, READY_TIMEOUT_SECONDS)
        items = output.wait_for("cluster: pids ", 5).removeprefix("cluster: pids ").split()
        pids = {name: int(pid) for name, pid in (item.split("=") for item in items)}
        assert set(pids) >= {"control-plane", "gateway-1", "gateway-2"}
        assert f"Control plane    {control_plane}" in output.text

        # Then: a token from the control plane's login works on every data plane through the front.
        owner = login(control_plane, "owner@bakery-madrid.example", DEMO_PASSWORD)
        echoes = [httpx.get(f"{front}/api/v1/sales/echo", headers=owner, trust_env=False) for _ in range(2)]
        assert [echo.status_code for echo in echoes] == [200, 200]
        # and the data planes have no admin, but the control plane lists both, alive and current
        assert httpx.get(f"http://127.0.0.1:{base_port}/admin/", trust_env=False).status_code == 404
        staff = login(control_plane, "admin", ADMIN_PASSWORD)
        listed = httpx.get(f"{control_plane}/api/manage/data-planes/", headers=staff, trust_env=False)
        rows = {row["name"]: (row["alive"], row["current"]) for row in listed.json()["results"]}
        assert rows == {"gateway-1": (True, True), "gateway-2": (True, True)}

        # And: read-only toggled in the control plane's admin holds on a data plane within 1 s.
        data_plane = f"http://127.0.0.1:{base_port + 1}"
        check_read_only_toggle_crosses_instances(control_plane, data_plane, owner, staff)
        # And: a logout on the control plane rejects the token on a data plane within 1 s (Redis).
        check_logout_crosses_instances(control_plane, data_plane)

        # When: Ctrl-C. Then: it exits cleanly and every child is gone.
        process.send_signal(signal.SIGINT)
        assert process.wait(STOP_TIMEOUT_SECONDS) == 0
        assert not [name for name, pid in pids.items() if group_alive(pid)]
        assert "without a database" not in output.text
    finally:
        stop_cluster(process)
