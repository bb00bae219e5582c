"""A staff member puts a tenant in read-only mode from the admin, in a real browser."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from tenancy.models import Subscription, Tenant, User

REASON = "Chargeback under review"


@pytest.fixture(autouse=True, scope="module")
def _orm_beside_playwright(django_db_setup):
    """Playwright's sync API keeps an event loop running in this thread, so Django's async-safety
    check would refuse every ORM call here although nothing runs concurrently. Requesting
    django_db_setup first also creates the test database before the browser starts."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture
def bakery_madrid(transactional_db) -> Tenant:
    tenant = Tenant.objects.create(name="Bakery Madrid", slug="bakery-madrid")
    Subscription.objects.create(tenant=tenant, current_period_end=timezone.now() + timedelta(days=30))
    Tenant.objects.create(name="Bakery Sevilla", slug="bakery-sevilla")
    return tenant


@pytest.mark.browser
def test_staff_toggle_read_only_with_a_reason(live_server, page, bakery_madrid, artifacts_dir):
    User.objects.create_superuser("ops", "ops@example.com", "ops-pass-123")

    # Given a staff member logged into the admin
    page.goto(f"{live_server.url}/admin/login/?next=/admin/tenancy/tenant/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops-pass-123")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/tenancy/tenant/")

    # When they select bakery-madrid, choose "Toggle read-only" and give a reason
    row = page.locator("#result_list tbody tr", has_text="bakery-madrid")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", label="Toggle read-only")
    page.get_by_role("button", name="Go").click()
    page.wait_for_selector("#toggle-read-only-form")
    assert "writable" in page.inner_text("#toggle-read-only-tenants")
    page.fill("#id_reason", REASON)
    page.screenshot(path=os.path.join(artifacts_dir, "admin-toggle-read-only-confirm.png"))
    page.get_by_role("button", name="Yes, toggle read-only").click()

    # Then the changelist confirms it and shows the flag and the reason on that row only
    page.wait_for_selector(".messagelist .success")
    assert "now read-only: Bakery Madrid" in page.inner_text(".messagelist .success")
    row = page.locator("#result_list tbody tr", has_text="bakery-madrid")
    assert row.locator("input[name$='-read_only']").is_checked()
    assert row.locator("input[name$='-read_only_reason']").input_value() == REASON
    other = page.locator("#result_list tbody tr", has_text="bakery-sevilla")
    assert not other.locator("input[name$='-read_only']").is_checked()
    page.screenshot(path=os.path.join(artifacts_dir, "admin-toggle-read-only.png"), full_page=True)

    bakery_madrid.refresh_from_db()
    assert (bakery_madrid.read_only, bakery_madrid.read_only_reason) == (True, REASON)

    # And the tenant's page lists the change in its recent admin activity
    row.get_by_role("link", name="Bakery Madrid").click()
    activity = page.locator("#tenant-activity")
    assert f"Turned read-only on: {REASON}" in activity.inner_text()
    page.screenshot(path=os.path.join(artifacts_dir, "admin-tenant-activity.png"), full_page=True)
