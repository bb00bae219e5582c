"""Admin: each tenant's usage (filter on the usage hours), and plans with their service quotas."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from usage.models import UsageHour

HOUR = datetime(2026, 3, 14, 10, tzinfo=UTC)


@pytest.fixture
def service(db):
    from registry.models import Service

    return Service.objects.create(name="Stock", slug="stock", path_prefix="/api/v1/stock")


def test_the_usage_view_of_one_tenant(admin_client):
    UsageHour.objects.create(tenant_slug="madrid", service_slug="sales", hour=HOUR, requests=4321)
    UsageHour.objects.create(tenant_slug="sevilla", service_slug="sales", hour=HOUR, requests=8765)
    response = admin_client.get("/admin/usage/usagehour/", {"tenant_slug": "madrid"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "4321" in page and "8765" not in page
    assert admin_client.get("/admin/usage/usagehour/add/").status_code == 403


def test_staff_create_a_plan_with_a_service_quota(admin_client, service):
    from tenancy.models import Plan

    form = {
        "name": "starter", "description": "", "monthly_request_quota": "50",
        "service_quotas-TOTAL_FORMS": "1", "service_quotas-INITIAL_FORMS": "0",
        "service_quotas-0-service": str(service.pk), "service_quotas-0-monthly_request_quota": "5",
    }  # fmt: skip
    response = admin_client.post("/admin/tenancy/plan/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    plan = Plan.objects.get(name="starter")
    assert plan.monthly_request_quota == 50
    assert [(q.service.slug, q.monthly_request_quota) for q in plan.service_quotas.all()] == [("stock", 5)]


def test_a_zero_quota_is_refused_and_nothing_is_saved(admin_client, service):
    from tenancy.models import Plan

    form = {
        "name": "broken", "monthly_request_quota": "0",
        "service_quotas-TOTAL_FORMS": "0", "service_quotas-INITIAL_FORMS": "0",
    }  # fmt: skip
    response = admin_client.post("/admin/tenancy/plan/add/", form)
    assert response.status_code == 200
    assert not Plan.objects.filter(name="broken").exists()
