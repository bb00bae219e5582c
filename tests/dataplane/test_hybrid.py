"""Hybrid mode (SPEC section 18): a data plane follows its control plane.

The control plane is a live gateway on loopback (GATEWAY_ROLE=control_plane) over the test
database; the data plane is a real process with no DATABASE_URL and only the cluster token.
"""

from __future__ import annotations

import time

import httpx
import pytest

from declarative.models import DataPlane
from registry.config_version import bump_config_version, current_config_version
from registry.models import Target
from tests.control_plane import admin_url, assert_problem
from tests.dataplane.process import DataPlaneProcess, metric_value, wait_until
from tests.live import GatewayServer

pytestmark = [pytest.mark.slow]

CLUSTER_TOKEN = "cluster-token-for-tests-0123456789abcdef"
FOLLOW_SECONDS = 1.0  # SPEC section 18: an admin change is served within 1 s
START_SECONDS = 10.0
STILL_DOWN_SECONDS = 1.5
GRACEFUL_SECONDS = 1  # the long polls the stopped control plane still holds are cut


@pytest.fixture
def control_plane(transactional_db, settings, demo):
    settings.GATEWAY_ROLE = "control_plane"
    settings.GATEWAY_CLUSTER_TOKEN = CLUSTER_TOKEN
    server = GatewayServer(timeout_graceful_shutdown=GRACEFUL_SECONDS).start()
    yield server
    server.stop()


def point_every_target_at(url: str) -> None:
    Target.objects.update(url=url)  # .update(): one version bump below, not one per row
    bump_config_version()


def owner_token() -> dict[str, str]:
    from tenancy.models import User
    from tenancy.tokens import tokens_for_user

    user = User.objects.get(username="owner@bakery-madrid.example")
    return {"Authorization": f"Bearer {tokens_for_user(user)['access']}"}


def data_plane(tmp_path, control_plane_url: str) -> DataPlaneProcess:
    return DataPlaneProcess(
        tmp_path,
        control_plane_url,
        GATEWAY_CLUSTER_TOKEN=CLUSTER_TOKEN,
        GATEWAY_DATA_PLANE_NAME="edge-1",
        DATA_PLANE_STATE_FILE=str(tmp_path / "state" / "edge-1.json"),
    )


@pytest.mark.django_db
def test_a_gateway_that_is_not_a_control_plane_serves_no_data_plane(client):
    for path in ("/api/manage/cluster/config", "/api/manage/cluster/config/version?name=x&after=0"):
        response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {CLUSTER_TOKEN}")
        assert_problem(response, 404, "NOT_FOUND")


def test_the_cluster_endpoints_need_the_token(control_plane):
    for path in ("/api/manage/cluster/config", "/api/manage/cluster/config/version?name=x&after=0"):
        response = httpx.get(control_plane.url + path, headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401 and response.json()["code"] == "AUTH_ERROR"
    bad = httpx.get(
        control_plane.url + "/api/manage/cluster/config/version?after=x&name=e",
        headers={"Authorization": f"Bearer {CLUSTER_TOKEN}"},
    )
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_REQUEST"
    config = httpx.get(
        control_plane.url + "/api/manage/cluster/config", headers={"Authorization": f"Bearer {CLUSTER_TOKEN}"}
    ).json()
    # public keys only: no private member in any JWK
    assert config["jwks"]["keys"] and not any("d" in jwk for jwk in config["jwks"]["keys"])
    assert config["version"] == current_config_version()
    # what a data plane does not need stays on the control plane
    assert "notification_rules" not in config["document"] and config["document"]["tenants"]


def test_a_data_plane_follows_its_control_plane_and_outlives_it(
    control_plane, demo_key, upstream, second_upstream, staff_client, tmp_path
):
    # Given every demo target on the first upstream, and a data plane following the control plane
    point_every_target_at(upstream.url)
    plane = data_plane(tmp_path, control_plane.url).start()
    try:
        wait_until(lambda: plane.get("/health/ready").status_code == 200, START_SECONDS, "not ready")
        # When a client calls through the data plane (a key known by its hash, a token by public key)
        assert plane.get("/api/v1/sales/echo", headers={"X-API-Key": demo_key}).status_code == 200
        assert plane.get("/api/v1/sales/echo", headers=owner_token()).status_code == 200
        assert len(upstream.hits("/echo")) == 2
        # and the control plane lists it, alive and current
        listed = staff_client.get("/api/manage/data-planes/").json()["results"]
        assert [(p["name"], p["alive"], p["current"]) for p in listed] == [("edge-1", True, True)]
        assert 'data-data-plane="edge-1"' in staff_client.get("/dashboard/").content.decode()
        assert "edge-1" in staff_client.get(admin_url(DataPlane, "changelist")).content.decode()

        # When staff move sales to the second upstream through the management API
        target = Target.objects.filter(service__slug="sales").first()
        change = staff_client.patch(
            f"/api/manage/targets/{target.pk}/", {"url": second_upstream.url}, format="json"
        )
        assert change.status_code == 200, change.content
        # Then the data plane routes there within 1 s
        took = wait_until(
            lambda: (
                plane.get("/api/v1/sales/echo", headers={"X-API-Key": demo_key}).status_code == 200
                and bool(second_upstream.hits("/echo"))
            ),
            FOLLOW_SECONDS,
            f"the data plane did not follow within {FOLLOW_SECONDS}s",
        )
        print(f"admin change served by the data plane after {took:.3f}s")

        # When a pushed config does not validate (a value written past the validators)
        Target.objects.filter(pk=target.pk).update(url="ftp://not-a-target")
        bump_config_version()
        # Then the data plane refuses it, counts it and keeps routing as before
        wait_until(
            lambda: metric_value(plane.get("/metrics").text, "gateway_config_errors_total") == 1,
            FOLLOW_SECONDS * 2,
            "the invalid push was not counted",
        )
        second_upstream.clear()
        assert plane.get("/api/v1/sales/echo", headers={"X-API-Key": demo_key}).status_code == 200
        assert len(second_upstream.hits("/echo")) == 1
        Target.objects.filter(pk=target.pk).update(url=second_upstream.url)
        bump_config_version()

        # When the control plane stops
        control_plane.stop()
        second_upstream.clear()
        # Then the data plane keeps serving its last config, and says its control plane is away
        assert plane.get("/api/v1/sales/echo", headers={"X-API-Key": demo_key}).status_code == 200
        assert len(second_upstream.hits("/echo")) == 1
        assert plane.get("/health/ready").status_code == 200
        wait_until(
            lambda: plane.get("/api/v1/status").json()["control_plane_reachable"] is False,
            START_SECONDS,
            "status does not say the control plane is unreachable",
        )
        time.sleep(STILL_DOWN_SECONDS)  # several polls later it still says so
        assert plane.get("/api/v1/status").json()["control_plane_reachable"] is False
    finally:
        plane.stop()

    # When it restarts while the control plane is still down
    with data_plane(tmp_path, control_plane.url) as restarted:
        wait_until(lambda: restarted.get("/health/ready").status_code == 200, START_SECONDS, "not ready")
        # Then it serves the config it persisted
        second_upstream.clear()
        response = restarted.get("/api/v1/sales/echo", headers={"X-API-Key": demo_key})
        assert response.status_code == 200, response.text
        assert len(second_upstream.hits("/echo")) == 1
        time.sleep(STILL_DOWN_SECONDS)  # and it does not claim its control plane is back
        assert restarted.get("/api/v1/status").json()["control_plane_reachable"] is False
    assert "serving persisted config" in restarted.log()
    assert "without a database" not in plane.log() + restarted.log()
