"""The staff dashboard: who may see it, what data.json reports, and live traffic through a
real gateway (SPEC section 5)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from proxy.breaker import BreakerSettings
from proxy.runtime import Runtime
from tests.live import GatewayProcess

DATA = "/dashboard/data.json"
PAGE = "/dashboard/"
REASON = "Chargeback under review"
CLOSED_PORT = "http://127.0.0.1:9"


def totals(data: dict, slug: str) -> dict:
    """Requests, 5xx and 4xx counted back from a service's per-second rates."""
    traffic = data["traffic"]
    current = traffic["current_bucket"]
    counts = {"requests": 0.0, "errors": 0.0, "client_errors": 0.0}
    for point in traffic["services"].get(slug, []):
        seconds = current["seconds"] if point["t"] == current["t"] else traffic["bucket_seconds"]
        counts["requests"] += point["rps"] * seconds
        counts["errors"] += point["errors_per_s"] * seconds
        counts["client_errors"] += point["client_errors_per_s"] * seconds
    return {name: round(value) for name, value in counts.items()}


def clear_shared_traffic() -> None:
    """Forget traffic that earlier tests shared through Redis (it is kept for 20 minutes)."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    from gateway_project.core.broadcast import sync_redis

    client = sync_redis()
    keys = list(client.scan_iter(f"{settings.CACHE_KEY_PREFIX}:traffic:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _no_shared_traffic():
    clear_shared_traffic()
    yield
    clear_shared_traffic()


@pytest.fixture
def registry(make_service, make_tenant):
    """Two services (one disabled), and a read-only tenant beside a writable one."""
    sales = make_service("sales", targets=[{"url": "http://127.0.0.1:8001", "weight": 70}])
    make_service("orders", targets=[CLOSED_PORT], enabled=False)
    make_tenant("initech", read_only=True, read_only_reason=REASON)
    make_tenant("globex")
    return sales


@pytest.fixture
def data_plane(monkeypatch):
    """A real data-plane runtime as this process's active one (no server: nothing is sent)."""
    runtime = Runtime()
    monkeypatch.setattr("proxy.runtime._active", runtime)
    return runtime


def open_breaker(runtime: Runtime, target_id: int) -> None:
    breaker = runtime.breakers.get(
        target_id, "orders", BreakerSettings(failure_threshold=2, minimum_throughput=2)
    )
    for _ in range(2):
        breaker.acquire()
        breaker.record_failure()


# --- access ----------------------------------------------------------------------------------


def test_anonymous_gets_401_problem_and_the_page_redirects_to_login(client, registry):
    response = client.get(DATA)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "AUTH_ERROR"
    assert "services" not in response.json()

    page = client.get(PAGE)
    assert page.status_code == 302
    assert page["Location"] == "/admin/login/?next=/dashboard/"


def test_a_tenant_member_gets_403_problem_and_is_sent_to_the_staff_login(member_client, registry):
    response = member_client.get(DATA)
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"
    assert "services" not in response.json()

    page = member_client.get(PAGE)
    assert page.status_code == 302
    assert page["Location"] == "/admin/login/?next=/dashboard/"


# --- data.json --------------------------------------------------------------------------------


def test_staff_data_lists_services_targets_breakers_and_read_only_tenants(staff_client, registry, data_plane):
    from registry.models import Target

    # Given the orders target's breaker opened on this instance
    orders_target = Target.objects.get(service__slug="orders")
    open_breaker(data_plane, orders_target.pk)

    # When staff read data.json
    response = staff_client.get(DATA)

    # Then it carries every service with its targets' health and breaker
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    data = response.json()
    assert set(data) >= {
        "generated_at",
        "config_version",
        "sse_connections",
        "services",
        "read_only_tenants",
        "traffic",
    }
    assert data["sse_connections"] == 0
    by_slug = {s["slug"]: s for s in data["services"]}
    assert [s["name"] for s in data["services"]] == ["Orders", "Sales"]
    assert by_slug["sales"]["prefix"] == "/api/v1/sales"
    assert (by_slug["sales"]["enabled"], by_slug["sales"]["status"]) == (True, "healthy")
    assert (by_slug["orders"]["enabled"], by_slug["orders"]["status"]) == (False, "disabled")
    sales_target = by_slug["sales"]["targets"][0]
    assert sales_target["url"] == "http://127.0.0.1:8001"
    assert sales_target["weight"] == 70
    assert sales_target["last_check"] is None
    assert sales_target["circuit_breaker"] == {
        "state": "closed",
        "failure_count": 0,
        "time_until_retry": 0.0,
    }
    breaker = by_slug["orders"]["targets"][0]["circuit_breaker"]
    assert (breaker["state"], breaker["failure_count"]) == ("open", 2)
    assert 0 < breaker["time_until_retry"] <= 30
    # And only the read-only tenant, with its reason
    assert data["read_only_tenants"] == [
        {"slug": "initech", "name": "Initech", "plan": "standard", "reason": REASON}
    ]
    assert data["summary"]["by_status"] == {
        "healthy": 1,
        "degraded": 0,
        "unhealthy": 0,
        "disabled": 1,
    }


def test_staff_data_shows_the_last_health_check(staff_client, registry):
    from registry.models import TargetHealthCheck

    target = registry.targets.get()
    TargetHealthCheck.objects.create(target=target, ok=True, status_code=200, latency_ms=4.5)
    target_data = staff_client.get(DATA).json()["services"][1]["targets"][0]
    assert target_data["last_check"]["status_code"] == 200
    assert target_data["last_check"]["latency_ms"] == 4.5
    assert target_data["last_check"]["at"]


def test_traffic_recorded_by_the_data_plane_is_charted_per_service(staff_client, registry, data_plane):
    # Given the data plane answered 20 quick requests and 5 slow 503s for sales
    for _ in range(20):
        data_plane.traffic.record("sales", 200, 0.004)
    for _ in range(5):
        data_plane.traffic.record("sales", 503, 0.2)

    data = staff_client.get(DATA).json()

    # Then sales has 15 minutes of 10-second points holding exactly those requests
    points = data["traffic"]["services"]["sales"]
    assert data["traffic"]["bucket_seconds"] == 10
    assert len(points) == 90
    assert totals(data, "sales") == {"requests": 25, "errors": 5, "client_errors": 0}
    busy = [p for p in points if p["rps"]]
    assert busy and max(p["p95"] for p in busy) == 0.25
    assert "orders" not in data["traffic"]["services"]
    assert data["summary"]["rps"] == points[-1]["rps"]


def test_without_a_data_plane_traffic_is_empty_and_breakers_unknown(staff_client, registry):
    data = staff_client.get(DATA).json()
    assert data["traffic"]["services"] == {}
    assert data["traffic"]["current_bucket"] is None
    assert data["services"][1]["targets"][0]["circuit_breaker"] is None


# --- the page ----------------------------------------------------------------------------------


def test_staff_page_shows_services_targets_breakers_and_tenants(staff_client, registry, data_plane):
    from registry.models import Target

    open_breaker(data_plane, Target.objects.get(service__slug="orders").pk)

    response = staff_client.get(PAGE)

    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'data-testid="service-name">Orders<', html)
    assert re.search(r'data-testid="service-name">Sales<', html)
    assert "/api/v1/sales" in html and "http://127.0.0.1:8001" in html
    assert f"#{registry.targets.get().pk} · weight 70" in html
    assert re.search(r'pill-open" data-testid="breaker-state" data-state="open">open<', html)
    assert re.search(r'pill-closed" data-testid="breaker-state" data-state="closed">closed<', html)
    assert "switched off" in html  # orders is disabled
    assert REASON in html and "Globex" not in html
    # Charts and polling come from the gateway's own static files, never a CDN
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', html)
    assert scripts == ["/static/gateway/dashboard.js"]
    assert re.findall(r'<link[^>]+href="([^"]+)"', html) == [
        "/static/gateway/site.css",
        "/static/gateway/dashboard.css",
    ]


def test_the_dashboard_script_and_styles_are_served(staff_client):
    script = staff_client.get("/static/gateway/dashboard.js")
    assert script.status_code == 200
    body = b"".join(script.streaming_content) if script.streaming else script.content
    assert b"setInterval" in body and b"visibilitychange" in body
    assert b"http://" not in body.replace(b"http://www.w3.org/2000/svg", b"")
    assert staff_client.get("/static/gateway/dashboard.css").status_code == 200


# --- live -------------------------------------------------------------------------------------


@contextmanager
def staff_session(base_url: str, username: str, password: str) -> Iterator[httpx.Client]:
    """An httpx client logged into the admin the way a browser does (CSRF cookie + token)."""
    with httpx.Client(base_url=base_url, timeout=10) as session:
        yield _log_in(session, base_url, username, password)


def _log_in(session: httpx.Client, base_url: str, username: str, password: str) -> httpx.Client:
    form = session.get("/admin/login/", params={"next": PAGE})
    assert form.status_code == 200
    login = session.post(
        "/admin/login/",
        data={
            "username": username,
            "password": password,
            "next": PAGE,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{base_url}/admin/login/"},
    )
    assert login.status_code == 302 and login.headers["location"] == PAGE, login.text[:300]
    return session


def test_live_gateway_traffic_shows_on_the_dashboard(gateway, make_service, upstream, staff_user):
    # Given sales is served by a live gateway (no retries, a breaker that stays closed)
    make_service("sales", targets=[upstream.url], retries=0, breaker_failure_threshold=50)
    gateway.sync()

    # When 30 requests succeed, 4 fail upstream with 500 and 2 are 404s
    with httpx.Client(base_url=gateway.url, timeout=10) as api:
        statuses = [api.get("/api/v1/sales/x").status_code for _ in range(30)]
        statuses += [api.get("/api/v1/sales/status/500").status_code for _ in range(4)]
        statuses += [api.get("/api/v1/sales/status/404").status_code for _ in range(2)]
    assert statuses == [200] * 30 + [500] * 4 + [404] * 2

    # Then a staff session on the same gateway sees them in data.json
    with staff_session(gateway.url, "staffer", "staff-pass-123") as session:
        response = session.get(DATA)
        page = session.get(PAGE)
    assert response.status_code == 200
    data = response.json()
    assert totals(data, "sales") == {"requests": 36, "errors": 4, "client_errors": 2}
    assert data["config_version"] == gateway.runtime.snapshot.version
    sales = data["services"][0]
    assert sales["targets"][0]["circuit_breaker"]["state"] == "closed"
    assert sales["targets"][0]["circuit_breaker"]["failure_count"] == 4
    assert page.status_code == 200 and "Sales" in page.text
    # Only the requests sent above reached the upstream: the dashboard called none
    assert len(upstream.hits()) == 36


def test_anonymous_live_data_is_refused(gateway):
    response = httpx.get(f"{gateway.url}{DATA}")
    assert response.status_code == 401
    assert response.json()["code"] == "AUTH_ERROR"


@pytest.mark.redis
@pytest.mark.slow
def test_two_instances_sharing_redis_chart_the_whole_cluster(redis_url, make_service, upstream, staff_user):
    make_service("sales", targets=[upstream.url], retries=0)
    first, second = GatewayProcess().start(), GatewayProcess().start()
    try:
        # Given 12 requests through one instance and 8 through the other
        for instance, count in ((first, 12), (second, 8)):
            for _ in range(count):
                assert httpx.get(f"{instance.url}/api/v1/sales/x").status_code == 200
        # Then the first instance's dashboard counts all 20 once their bucket is shared
        with staff_session(first.url, "staffer", "staff-pass-123") as session:
            deadline = time.monotonic() + 25
            while True:
                seen = totals(session.get(DATA).json(), "sales")["requests"]
                if seen == 20 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        assert seen == 20
    finally:
        first.stop()
        second.stop()
