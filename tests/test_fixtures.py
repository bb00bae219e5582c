"""`manage.py load_demo`: exactly the demo data of SPEC section 12, idempotent, self-contained."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from alerts.models import NotificationRule
from fixtures import demo_data
from fixtures.demo_ports import demo_port_map
from registry.models import RatePolicy, Service, Target
from tenancy.models import Subscription, Tenant, User

DEMO_SERVICES = ["sales", "inventory", "forecasting", "orders", "training"]
DEMO_TENANTS = ["bakery-madrid", "bakery-sevilla", "bakery-demo", "bakery-lapsed"]
BASE_PORT = 9300

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def demo_upstream_env(monkeypatch):
    monkeypatch.setenv("DEMO_UPSTREAM_HOST", "127.0.0.1")
    monkeypatch.setenv("DEMO_UPSTREAM_BASE_PORT", str(BASE_PORT))


def load_demo() -> str:
    out = StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


def registry_state() -> dict:
    """Every row the demo owns, without timestamps: equal after a reload means nothing moved."""
    skip = {"created_at", "updated_at", "last_login", "date_joined"}

    def rows(queryset):
        return [{k: v for k, v in row.items() if k not in skip} for row in queryset.values()]

    return {
        "tenants": rows(Tenant.objects.order_by("slug")),
        "subscriptions": rows(Subscription.objects.order_by("tenant__slug")),
        "users": rows(User.objects.order_by("username")),
        "services": rows(Service.objects.order_by("slug")),
        "targets": rows(Target.objects.order_by("url")),
        "policies": rows(RatePolicy.objects.order_by("name")),
        "rules": rows(NotificationRule.objects.order_by("pk")),
    }


@pytest.fixture
def unrelated_service():
    service = Service.objects.create(name="Billing", slug="billing", path_prefix="/api/v1/billing")
    Target.objects.create(service=service, url="http://127.0.0.1:7000")
    return service


def test_loading_twice_creates_each_row_once_and_changes_nothing(unrelated_service):
    # Given: an operator's own service. When: the demo is loaded twice.
    before = unrelated_service.updated_at
    first_output = load_demo()
    state_after_first = registry_state()
    second_output = load_demo()

    # Then: the second run created nothing and changed nothing, not even a password hash.
    assert registry_state() == state_after_first
    assert "tenants 4 new" in first_output
    assert "tenants 0 new / 4 kept" in second_output
    assert sorted(Tenant.objects.values_list("slug", flat=True)) == sorted(DEMO_TENANTS)
    assert Subscription.objects.count() == 4
    assert sorted(User.objects.values_list("username", flat=True)) == sorted(
        user["username"] for user in demo_data.USERS
    )
    assert sorted(Service.objects.values_list("slug", flat=True)) == sorted([*DEMO_SERVICES, "billing"])
    assert Target.objects.count() == len(DEMO_SERVICES) + 1
    assert list(RatePolicy.objects.values_list("name", flat=True)) == ["client-minute"]
    assert NotificationRule.objects.count() == 1
    # And the operator's service is untouched.
    unrelated_service.refresh_from_db()
    assert unrelated_service.updated_at == before
    assert [t.url for t in unrelated_service.targets.all()] == ["http://127.0.0.1:7000"]


def test_every_loaded_row_passes_model_validation():
    load_demo()
    for model in (Tenant, Subscription, User, Service, Target, RatePolicy, NotificationRule):
        for row in model.objects.all():
            row.full_clean()


def test_subscriptions_active_except_lapsed_past_grace():
    load_demo()
    now = timezone.now()
    lapsed = Subscription.objects.get(tenant__slug="bakery-lapsed")
    assert lapsed.status == "canceled"
    assert lapsed.grace_ends_at < now - timedelta(days=30)
    for slug in ("bakery-madrid", "bakery-sevilla", "bakery-demo"):
        subscription = Subscription.objects.get(tenant__slug=slug)
        assert subscription.status == "active"
        assert subscription.current_period_end > now + timedelta(days=300)
    assert list(Tenant.objects.filter(is_demo=True).values_list("slug", flat=True)) == ["bakery-demo"]


@pytest.mark.parametrize(
    ("username", "password", "role", "tenant"),
    [
        ("owner@bakery-madrid.example", "bakery-demo", "member", "bakery-madrid"),
        ("owner@bakery-sevilla.example", "bakery-demo", "member", "bakery-sevilla"),
        ("owner@bakery-lapsed.example", "bakery-demo", "member", "bakery-lapsed"),
        ("viewer@bakery-madrid.example", "bakery-demo", "viewer", "bakery-madrid"),
    ],
)
def test_tenant_users(username, password, role, tenant):
    load_demo()
    user = User.objects.get(username=username)
    assert user.check_password(password)
    assert (user.role, user.tenant.slug, user.email) == (role, tenant, username)
    assert not user.is_staff and not user.is_superuser and user.is_active


def test_admin_is_a_staff_superuser_without_tenant():
    load_demo()
    admin = User.objects.get(username="admin")
    assert admin.check_password("admin-demo")
    assert (admin.role, admin.tenant, admin.is_staff, admin.is_superuser) == (
        "admin",
        None,
        True,
        True,
    )


def test_a_changed_demo_password_is_restored():
    load_demo()
    user = User.objects.get(username="owner@bakery-madrid.example")
    user.set_password("something-else")
    user.save()
    load_demo()
    user.refresh_from_db()
    assert user.check_password("bakery-demo")


def test_services_routes_roles_and_targets_on_the_demo_upstream():
    load_demo()
    ports = demo_port_map(BASE_PORT)
    for slug in DEMO_SERVICES:
        service = Service.objects.get(slug=slug)
        assert service.path_prefix == f"/api/v1/{slug}"
        assert (service.upstream_path, service.health_path) == ("", "/health")
        assert service.auth_required and service.enabled
        assert service.websocket_enabled is (slug == "training")
        assert [t.url for t in service.targets.all()] == [f"http://127.0.0.1:{ports[slug]}"]
    sales = Service.objects.get(slug="sales")
    assert (sales.read_roles, sales.write_roles) == (["viewer"], ["member"])
    assert Service.objects.get(slug="orders").read_roles == []


def test_default_rate_policy_and_notification_rule():
    load_demo()
    policy = RatePolicy.objects.get(name="client-minute")
    assert (policy.scope, policy.limit, policy.window_seconds, policy.service) == (
        "user", 300, 60, None,
    )  # fmt: skip
    rule = NotificationRule.objects.get()
    assert (rule.tenant.slug, rule.min_severity, rule.channel, rule.destination) == (
        "bakery-madrid", "warning", "sse", "",
    )  # fmt: skip


def test_a_failure_midway_leaves_nothing_half_loaded(monkeypatch):
    broken_users = [
        *demo_data.USERS,
        {"username": "x@y.example", "tenant": "nope", "role": "member"},
    ]
    monkeypatch.setattr(demo_data, "USERS", broken_users)
    with pytest.raises(KeyError):
        load_demo()
    assert not Tenant.objects.exists()
    assert not User.objects.exists()


def test_demo_plans_and_each_tenant_on_one():
    from tenancy.models import Plan

    load_demo()
    plans = {plan.name: plan for plan in Plan.objects.prefetch_related("service_quotas__service")}
    assert sorted(plans) == ["pro", "starter"]
    assert plans["starter"].monthly_request_quota == 100_000
    assert [(q.service.slug, q.monthly_request_quota) for q in plans["starter"].service_quotas.all()] == [
        ("forecasting", 10_000)
    ]
    subscribed = dict(Subscription.objects.values_list("tenant__slug", "plan__name"))
    assert subscribed == {
        "bakery-madrid": "pro",
        "bakery-sevilla": "starter",
        "bakery-demo": "starter",
        "bakery-lapsed": "starter",
    }
