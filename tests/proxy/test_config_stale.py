"""A config version that does not compile (SPEC section 16): the instance keeps serving its
last good snapshot and stays ready, while the health views, the dashboard, the admin and
/metrics say `config_stale` and name the object at fault; the next good save recovers."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from django.test import Client

from proxy.snapshot import CompileError, compile_snapshot
from tests.live import wait_until
from tests.proxy.test_observability import sample

BAD_NETWORK = "not-a-network"


@pytest.fixture
def staff(transactional_db):
    """A staff user and their management-API token header."""
    from rest_framework.authtoken.models import Token

    from tenancy.models import User

    user = User.objects.create_user(
        "stale-staff", password="staff-pass-123", is_staff=True, is_superuser=True
    )
    return user, {"Authorization": f"Token {Token.objects.create(user=user).key}"}


@pytest.fixture
def quick_retries(monkeypatch):
    """Retry a failed version at every poll, so a test sees the retries that must stay quiet."""
    monkeypatch.setattr("proxy.watcher.FAILED_VERSION_RETRY_SECONDS", 0.1)


def metric(gateway, name: str) -> float:
    return sample(httpx.get(f"{gateway.url}/metrics").text, name)


def detailed(gateway, headers) -> dict:
    response = httpx.get(f"{gateway.url}/api/v1/health/detailed", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_poisoned_value_keeps_the_last_snapshot_serving_and_says_which_object(
    gateway, make_service, upstream, staff, quick_retries, caplog
):
    user, token = staff
    sales = make_service("sales", targets=[upstream.url])
    gateway.sync()
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200
    errors_before = metric(gateway, "gateway_config_errors_total")
    caplog.set_level(logging.ERROR, logger="gateway.watcher")

    # When: a value slips past validation (save() without full_clean()), in the same
    # transaction as another service and its target: one version. Instances apply a save
    # as a delta of the objects it names, so the poisoned object is one of them.
    from django.db import transaction

    with transaction.atomic():
        sales.ip_allow = [BAD_NETWORK]
        sales.save()
        make_service("orders", targets=[upstream.url])
    culprit = f"service {sales.pk} (sales)"

    # Then: the detailed health names the object and what is wrong with it.
    def mine_stale():
        report = detailed(gateway, token)
        (mine,) = [i for i in report["config"]["instances"] if i["instance"] == gateway.runtime.instance]
        return (report, mine) if mine["stale"] else None

    report, mine = wait_until(
        mine_stale, timeout=5, message="this instance's config_stale in /api/v1/health/detailed"
    )
    assert report["config_stale"] is True
    assert report["config"]["error"].startswith(f"{culprit}: ValueError:")
    assert BAD_NETWORK in report["config"]["error"]
    assert mine["applied_version"] < mine["failing_version"]
    assert report["status"] == "degraded"
    # And: the instance stays ready and keeps serving its last good snapshot.
    assert httpx.get(f"{gateway.url}/health/ready").status_code == 200
    public = httpx.get(f"{gateway.url}/health").json()
    assert public["status"] == "degraded" and public["config_stale"] is True and "config_error" not in public
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200
    assert httpx.get(f"{gateway.url}/api/v1/orders/x").status_code == 404  # the new version is not in
    # And: /metrics counts the failure and the lag grows.
    assert metric(gateway, "gateway_config_errors_total") >= errors_before + 1
    wait_until(lambda: metric(gateway, "gateway_config_lag_seconds") >= 1, timeout=5, message="lag >= 1 s")
    # And: the dashboard and every admin page say so to staff.
    browser = Client()
    browser.force_login(user)
    dashboard = browser.get("/dashboard/").content.decode()
    assert dashboard_banner_shown(dashboard) and culprit in dashboard
    live = browser.get("/dashboard/data.json").json()
    assert live["config_stale"] is True and culprit in live["config_error"]
    for page in ("/admin/", "/admin/registry/service/"):
        html = browser.get(page).content.decode()
        assert 'data-testid="config-stale"' in html and culprit in html, page
    # And: the failure was logged once, naming the object, although it was retried since.
    # (The counter is process-wide: any other runtime alive in this test process logs and
    # counts the same failure from its own thread, once too.)
    failures = [r for r in caplog.records if r.name == "gateway.watcher" and r.levelno >= logging.ERROR]
    mine_logged = [r for r in failures if r.threadName == gateway.thread_name]
    assert len(mine_logged) == 1 and culprit in mine_logged[0].getMessage()
    assert metric(gateway, "gateway_config_errors_total") == errors_before + len(failures)

    # When: staff fix the service and save it.
    sales.refresh_from_db()
    sales.ip_allow = []
    sales.save()

    # Then: the new version applies, config_stale clears everywhere, the lag is back to 0.
    wait_until(lambda: not detailed(gateway, token)["config_stale"], timeout=5, message="recovery")
    assert httpx.get(f"{gateway.url}/api/v1/orders/x").status_code == 200
    public = httpx.get(f"{gateway.url}/health").json()
    assert public["status"] == "ok" and public["config_stale"] is False
    assert metric(gateway, "gateway_config_lag_seconds") == 0
    wait_until(
        lambda: 'data-testid="config-stale"' not in browser.get("/admin/").content.decode(),
        timeout=2,
        message="the admin banner to go",
    )
    assert not dashboard_banner_shown(browser.get("/dashboard/").content.decode())
    assert browser.get("/dashboard/data.json").json()["config_stale"] is False


def dashboard_banner_shown(html: str) -> bool:
    """The dashboard always carries the banner (its script toggles it); shown = not hidden."""
    tag = re.search(r'<p[^>]*data-testid="config-stale"[^>]*>', html)
    assert tag, "the dashboard has no config-stale banner element"
    return " hidden" not in tag.group(0)


def test_non_staff_see_no_banner_and_anonymous_no_detail(gateway, make_service, upstream, member_user):
    sales = make_service("sales", targets=[upstream.url])
    gateway.sync()
    sales.ip_allow = [BAD_NETWORK]
    sales.save()  # past validation: save() without full_clean()
    wait_until(lambda: httpx.get(f"{gateway.url}/health").json()["config_stale"], timeout=5, message="stale")
    anonymous = httpx.get(f"{gateway.url}/api/v1/health/detailed")
    assert anonymous.status_code == 401
    assert "sales" not in anonymous.text
    assert "config_error" not in httpx.get(f"{gateway.url}/health").json()


@pytest.mark.parametrize("poison", ["tenant", "rate policy"])
def test_compile_names_the_object_that_fails(transactional_db, make_service, make_tenant, poison):
    from registry.models import RatePolicy
    from tenancy.models import Tenant

    make_service("sales", targets=["http://127.0.0.1:9"])
    tenant = make_tenant("acme")
    policy = RatePolicy.objects.create(name="per-user", limit=10, window_seconds=60)
    compile_snapshot()  # all well so far
    if poison == "tenant":
        Tenant.objects.filter(pk=tenant.pk).update(ip_deny=["10.0.0.0/33"])
        culprit = f"tenant {tenant.pk} (acme): ValueError"
    else:
        RatePolicy.objects.filter(pk=policy.pk).update(methods=42)
        culprit = f"rate policy {policy.pk} (per-user): TypeError"
    with pytest.raises(CompileError) as failure:
        compile_snapshot()
    assert str(failure.value).startswith(culprit)
    assert failure.value.version is not None
