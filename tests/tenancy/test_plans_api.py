"""Plans in the management API (read-only) and a subscription naming its plan."""

from __future__ import annotations

import pytest


@pytest.fixture
def starter(db):
    from registry.models import RatePolicy, Service
    from tenancy.models import Plan, ServiceQuota

    plan = Plan.objects.create(name="starter", monthly_request_quota=100)
    stock = Service.objects.create(name="Stock", slug="stock", path_prefix="/api/v1/stock")
    ServiceQuota.objects.create(plan=plan, service=stock, monthly_request_quota=10)
    plan.rate_policies.add(RatePolicy.objects.create(name="starter-minute", limit=5, window_seconds=60))
    return plan


def test_plans_list_their_quotas_and_default_policies(staff_client, starter):
    response = staff_client.get("/api/manage/plans/")
    assert response.status_code == 200
    [plan] = response.json()["results"]
    assert plan["name"] == "starter" and plan["monthly_request_quota"] == 100
    assert plan["service_quotas"] == [{"service": "stock", "monthly_request_quota": 10}]
    assert plan["rate_policies"] == ["starter-minute"]
    assert staff_client.post("/api/manage/plans/", {"name": "x"}, format="json").status_code == 405


def test_a_subscription_names_its_plan(staff_client, tenant, starter):
    subscription = tenant.subscription
    url = f"/api/manage/subscriptions/{subscription.pk}/"
    assert staff_client.patch(url, {"plan": "starter"}, format="json").status_code == 200
    subscription.refresh_from_db()
    assert subscription.plan == starter
    refused = staff_client.patch(url, {"plan": "platinum"}, format="json")
    assert refused.status_code == 400 and "plan" in refused.json()["errors"]
    assert staff_client.patch(url, {"plan": None}, format="json").json()["plan"] is None
