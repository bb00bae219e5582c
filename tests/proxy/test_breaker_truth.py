"""What staff see is what the data plane does (SPEC section 16): with the breaker of a dead
target opened by real traffic through a running gateway, the management API (each
instance's entry), /api/v1/health/detailed, /metrics and the admin all say so."""

from __future__ import annotations

import httpx
import pytest

from tests.live import free_port, wait_until
from tests.proxy.test_observability import sample

REQUESTS = 12


@pytest.fixture
def staff_token(transactional_db):
    from rest_framework.authtoken.models import Token

    from tenancy.models import User

    staff = User.objects.create_user(
        "breaker-staff", password="staff-pass-123", is_staff=True, is_superuser=True
    )
    return staff, {"Authorization": f"Token {Token.objects.create(user=staff).key}"}


def test_an_open_breaker_reads_the_same_everywhere(make_service, upstream, gateway, staff_token):
    from django.test import Client

    staff, auth = staff_token
    dead = make_service("dead", targets=[f"http://127.0.0.1:{free_port()}"], retries=0).targets.get()
    alive = make_service("alive", targets=[upstream.url]).targets.get()
    gateway.sync()

    statuses = [httpx.get(f"{gateway.url}/api/v1/dead/echo").status_code for _ in range(REQUESTS)]

    assert statuses[:5] == [502] * 5 and set(statuses[5:]) == {503}  # 5 failures open it
    breaker = gateway.runtime.breakers.find(dead.pk)
    assert breaker.state == "open" and breaker.failure_count == 5

    def published_open():
        rows = httpx.get(f"{gateway.url}/api/manage/circuit-breakers/", headers=auth).json()["results"]
        rows = {row["target_id"]: row for row in rows}
        return rows if rows[dead.pk]["state"] == "open" else None

    rows = wait_until(published_open, timeout=1, message="the open breaker on the board")
    entry = rows[dead.pk]
    assert (entry["state"], entry["failure_count"]) == ("open", 5)
    mine = [i for i in entry["instances"] if i["instance"] == gateway.runtime.instance]
    assert len(mine) == 1 and mine[0]["state"] == "open" and mine[0]["failure_count"] == 5
    assert 0 < mine[0]["time_until_retry"] <= 30
    assert rows[alive.pk]["state"] == "closed" and rows[alive.pk]["failure_count"] == 0

    detailed = httpx.get(f"{gateway.url}/api/v1/health/detailed", headers=auth).json()
    (target,) = detailed["services"]["dead"]["targets_detail"]
    assert target["circuit_breaker"]["state"] == "open" and target["circuit_breaker"]["failure_count"] == 5

    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert sample(metrics, "gateway_circuit_breaker_state", service="dead", target=str(dead.pk)) == 2
    assert sample(metrics, "gateway_circuit_breaker_state", service="alive", target=str(alive.pk)) == 0

    admin = Client()
    admin.force_login(staff)
    page = admin.get(f"/admin/registry/target/{dead.pk}/change/").content.decode()
    assert "open (5 failures) on 1 of" in page


def test_an_instance_that_stops_drops_off_the_board(make_service, gateway, staff_token):
    from gateway_project.core import breaker_board
    from tests.live import GatewayServer

    make_service("dead", targets=[f"http://127.0.0.1:{free_port()}"])
    second = GatewayServer().start()
    instances = {gateway.runtime.instance, second.runtime.instance}
    wait_until(lambda: instances <= {e["instance"] for e in breaker_board.read_board().entries}, timeout=2)

    second.stop()

    names = {e["instance"] for e in breaker_board.read_board().entries}
    assert second.runtime.instance not in names and gateway.runtime.instance in names
