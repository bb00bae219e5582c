"""Plans in the file (SPEC sections 18 and 20): a plan's quotas and default rate policies by
natural key, a subscription naming its plan, applied idempotently and diffed field by field."""

from __future__ import annotations

import copy

import pytest

from registry.config_version import current_config_version
from tenancy.models import Plan, Tenant
from tests.declarative.conftest import gateway_config

pytestmark = pytest.mark.django_db


def plan_entry(document: dict, name: str) -> dict:
    return next(plan for plan in document["plans"] if plan["name"] == name)


def test_the_demo_plans_are_in_the_file_with_their_quotas_and_subscribers(demo_file):
    document, _ = demo_file
    starter = plan_entry(document, "starter")
    assert starter["monthly_request_quota"] == 100_000
    assert starter["service_quotas"] == [{"service": "forecasting", "monthly_request_quota": 10_000}]
    madrid = next(t for t in document["tenants"] if t["slug"] == "bakery-madrid")
    assert madrid["subscription"]["plan"] == "pro"


def test_a_plan_with_a_default_policy_applies_once_and_a_second_apply_changes_nothing(demo_file):
    document, write = demo_file
    edited = copy.deepcopy(document)
    policy = edited["rate_policies"][0]["name"]
    edited["plans"].append(
        {
            "name": "enterprise",
            "description": "Big bakeries",
            "monthly_request_quota": 9_000_000,
            "rate_policies": [policy],
            "service_quotas": [{"service": "sales", "monthly_request_quota": 1_000_000}],
        }
    )
    seville = next(t for t in edited["tenants"] if t["slug"] == "bakery-sevilla")
    seville["subscription"]["plan"] = "enterprise"

    first = gateway_config("apply", write(edited))
    version = current_config_version()
    second = gateway_config("apply", write(edited))

    assert first.code == 0, first.err
    assert "plans/enterprise" in first.out
    plan = Plan.objects.get(name="enterprise")
    assert [p.name for p in plan.rate_policies.all()] == [policy]
    assert [(q.service.slug, q.monthly_request_quota) for q in plan.service_quotas.all()] == [
        ("sales", 1_000_000)
    ]
    assert Tenant.objects.get(slug="bakery-sevilla").subscription.plan == plan
    assert second.code == 0 and current_config_version() == version


def test_diff_names_a_plans_changed_default_policies(demo_file):
    document, write = demo_file
    edited = copy.deepcopy(document)
    policy = edited["rate_policies"][0]["name"]
    plan_entry(edited, "pro")["rate_policies"] = [policy]

    diff = gateway_config("diff", write(edited))

    assert diff.code == 2
    assert "plans/pro" in diff.out and "rate_policies" in diff.out and policy in diff.out


def test_an_unknown_policy_or_plan_is_named_by_its_path_and_changes_nothing(demo_file):
    document, write = demo_file
    edited = copy.deepcopy(document)
    plan_entry(edited, "pro")["rate_policies"] = ["no-such-policy"]
    index = next(i for i, t in enumerate(edited["tenants"]) if t["slug"] == "bakery-madrid")
    edited["tenants"][index]["subscription"]["plan"] = "platinum"
    before = gateway_config("export").out

    run = gateway_config("apply", write(edited))

    assert run.code == 1
    assert "rate_policies[0]" in run.err or "rate_policies[0]" in run.out
    assert gateway_config("export").out == before
