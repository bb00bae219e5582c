"""Staff toggle a tenant read-only in the admin (a real browser), and the gateway refuses its writes."""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from tests.live import GatewayServer, RecordingUpstream, wait_until

pytestmark = pytest.mark.browser


@pytest.fixture
def live(transactional_db, settings):
    settings.RATE_LIMIT_DEFAULT = ""
    upstream = RecordingUpstream().start()
    server = GatewayServer().start()
    yield server, upstream
    server.stop()
    upstream.stop()


def test_read_only_toggled_in_the_admin_blocks_writes_through_the_gateway(live, page, artifacts_dir):
    from registry.models import Service, Target
    from tenancy.models import Subscription, Tenant, User
    from tenancy.tokens import tokens_for_user

    gateway, upstream = live
    tenant = Tenant.objects.create(name="Bakery Madrid", slug="bakery-madrid")
    Subscription.objects.create(tenant=tenant, current_period_end=timezone.now() + timedelta(days=30))
    owner = User.objects.create_user(
        "owner@bakery-madrid.example",
        email="owner@bakery-madrid.example",
        password="bakery-demo-pass",
        tenant=tenant,
        role="member",
    )
    User.objects.create_superuser("staff", "staff@example.com", "staff-pass-123", role="admin")
    service = Service.objects.create(name="Sales", slug="sales", path_prefix="/api/v1/sales")
    Target.objects.create(service=service, url=upstream.url)
    gateway.sync()
    token = {"Authorization": f"Bearer {tokens_for_user(owner)['access']}"}
    assert httpx.post(f"{gateway.url}/api/v1/sales/orders", headers=token, content=b"{}").status_code == 200

    page.goto(f"{gateway.url}/admin/login/?next=/admin/tenancy/tenant/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-pass-123")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/tenancy/tenant/")
    page.check(f"input[name=_selected_action][value='{tenant.pk}']")
    page.select_option("select[name=action]", "toggle_read_only")
    page.click("button[name=index]")
    page.fill("#toggle-read-only-form [name=reason]", "Invoice 2026-11 unpaid")
    page.click("#toggle-read-only-form input[type=submit]")
    page.wait_for_url("**/admin/tenancy/tenant/")
    page.screenshot(path=f"{artifacts_dir}/admin-read-only-then-gateway.png", full_page=True)

    def write_refused() -> httpx.Response | None:
        response = httpx.post(f"{gateway.url}/api/v1/sales/orders", headers=token, content=b"{}")
        return response if response.status_code == 403 else None

    refused = wait_until(
        write_refused, 1.0, interval=0.02, message="the write to be refused after the toggle"
    )
    assert refused.json()["code"] == "TENANT_READ_ONLY"
    assert refused.json()["detail"] == "Invoice 2026-11 unpaid"
    assert httpx.get(f"{gateway.url}/api/v1/sales/orders", headers=token).status_code == 200
    assert [r.method for r in upstream.hits("/orders")] == ["POST", "GET"]
