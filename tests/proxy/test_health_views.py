"""Health views (SPEC sections 10 and 16): one assessment behind every view, the status only
for anonymous callers, the detail for staff and token holders; the dashboard reads the data
plane's traffic on its loop while the loop keeps recording."""

from __future__ import annotations

import threading

import httpx
import pytest
from django.test import Client


@pytest.fixture
def staff(transactional_db):
    from rest_framework.authtoken.models import Token

    from tenancy.models import User

    user = User.objects.create_user(
        "views-staff", password="staff-pass-123", is_staff=True, is_superuser=True
    )
    return user, {"Authorization": f"Token {Token.objects.create(user=user).key}"}


def test_every_view_tells_the_same_status_and_a_disabled_service_is_no_fault(
    gateway, make_service, upstream, staff
):
    user, token = staff
    make_service("sales", targets=[upstream.url])
    make_service("orders", targets=["http://127.0.0.1:9"], enabled=False)
    gateway.sync()
    public = httpx.get(f"{gateway.url}/health").json()
    full = httpx.get(f"{gateway.url}/health", headers=token).json()
    detailed = httpx.get(f"{gateway.url}/api/v1/health/detailed", headers=token).json()
    status = httpx.get(f"{gateway.url}/api/v1/status").json()
    assert public["status"] == "ok" and public["config_stale"] is False
    assert public["services"] == {"sales": {"status": "healthy"}}  # the disabled one is not public
    assert full["status"] == detailed["status"] == status["status"] == "ok"
    assert full["services"]["orders"]["status"] == detailed["services"]["orders"]["status"] == "disabled"

    # When: the only target of an enabled service fails its checks.
    from registry.models import Target

    Target.objects.filter(service__slug="sales").update(healthy=False)
    gateway.sync()
    # Then: every view says degraded, from the same assessment.
    assert httpx.get(f"{gateway.url}/health").json()["status"] == "degraded"
    assert httpx.get(f"{gateway.url}/api/v1/health/detailed", headers=token).json()["status"] == "degraded"
    assert httpx.get(f"{gateway.url}/api/v1/status").json()["status"] == "degraded"


def test_anonymous_callers_get_service_statuses_only_and_staff_sessions_the_detail(
    gateway, make_service, upstream, staff
):
    user, _ = staff
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    for path in ("/health", "/api/v1/health"):
        assert httpx.get(f"{gateway.url}{path}").json()["services"] == {"sales": {"status": "healthy"}}
    # A token that does not verify is no token: the public answer, not an error.
    forged = httpx.get(f"{gateway.url}/health", headers={"Authorization": "Token forged"})
    assert forged.status_code == 200 and forged.json()["services"] == {"sales": {"status": "healthy"}}
    refused = httpx.get(f"{gateway.url}/api/v1/health/detailed")
    assert refused.status_code == 401
    assert refused.json()["code"] == "AUTH_ERROR"
    # A staff session (the admin's cookie) reads the detail, target URLs included.
    browser = Client()
    browser.force_login(user)
    assert browser.get("/health").json()["services"]["sales"]["status"] == "healthy"
    target = browser.get("/api/v1/health/detailed").json()["services"]["sales"]["targets_detail"][0]
    assert target["url"] == upstream.url


def test_a_tenant_member_token_gets_no_detail(gateway, make_service, upstream, member_user):
    from rest_framework.authtoken.models import Token

    make_service("sales", targets=[upstream.url])
    gateway.sync()
    member = {"Authorization": f"Token {Token.objects.create(user=member_user).key}"}
    assert httpx.get(f"{gateway.url}/health", headers=member).json()["services"] == {
        "sales": {"status": "healthy"}
    }
    assert httpx.get(f"{gateway.url}/api/v1/health/detailed", headers=member).status_code == 401


def test_the_dashboard_reads_traffic_while_the_loop_records_it(gateway, make_service, upstream, staff):
    """Requests land in new traffic buckets while data.json is read over and over: every
    read answers (no "dictionary changed size" from a read off the loop)."""
    user, _ = staff
    slugs = [f"svc{i}" for i in range(8)]
    for slug in slugs:
        make_service(slug, targets=[upstream.url])
    gateway.sync()
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=gateway.url) as client:
            while not stop.is_set():
                for slug in slugs:
                    client.get(f"/api/v1/{slug}/x")

    senders = [threading.Thread(target=traffic) for _ in range(3)]
    for sender in senders:
        sender.start()
    browser = Client()
    browser.force_login(user)
    try:
        answers = [browser.get("/dashboard/data.json") for _ in range(40)]
    finally:
        stop.set()
        for sender in senders:
            sender.join(10)
    assert {a.status_code for a in answers} == {200}
    charted = answers[-1].json()["traffic"]["services"]
    assert set(slugs) <= set(charted)
