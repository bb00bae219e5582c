"""The tenancy management API: tenants (read-only mode with a reason), subscriptions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registry.config_version import current_config_version
from tenancy.admin import READ_ONLY_REASON_REQUIRED, tenant_activity
from tenancy.models import Subscription, Tenant
from tests.control_plane import assert_problem

MANAGE = "/api/manage"
REASON = "Invoice 2024-117 unpaid"


# --- Tenants ----------------------------------------------------------------------------


def test_tenants_are_listed_with_their_subscription(staff_client, tenant):
    response = staff_client.get(f"{MANAGE}/tenants/")

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["slug"] == "acme" and row["plan"] == "standard"
    assert row["read_only"] is False and row["read_only_reason"] == "" and row["is_demo"] is False
    assert row["subscription"]["status"] == "active"
    assert row["subscription"]["grace_days"] == tenant.subscription.grace_days
    assert row["subscription"]["grace_ends_at"] is not None


def test_tenant_crud(staff_client):
    created = staff_client.post(
        f"{MANAGE}/tenants/",
        {"name": "Bakery Lyon", "slug": "bakery-lyon", "plan": "free", "is_demo": True},
        format="json",
    )
    tenant_id = created.json()["id"]
    patched = staff_client.patch(f"{MANAGE}/tenants/{tenant_id}/", {"plan": "enterprise"}, format="json")
    fetched = staff_client.get(f"{MANAGE}/tenants/{tenant_id}/")
    deleted = staff_client.delete(f"{MANAGE}/tenants/{tenant_id}/")

    assert created.status_code == 201, created.content
    assert created.json()["subscription"] is None and created.json()["is_demo"] is True
    assert patched.status_code == 200 and patched.json()["plan"] == "enterprise"
    assert fetched.json()["plan"] == "enterprise"
    assert deleted.status_code == 204
    assert not Tenant.objects.filter(slug="bakery-lyon").exists()


def test_the_nested_subscription_is_read_only(staff_client, tenant):
    response = staff_client.patch(
        f"{MANAGE}/tenants/{tenant.pk}/",
        {"subscription": {"status": "canceled"}, "name": "Acme 2"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["subscription"]["status"] == "active"
    assert Subscription.objects.get(tenant=tenant).status == "active"
    assert Tenant.objects.get(pk=tenant.pk).name == "Acme 2"


def test_a_tenant_with_users_cannot_be_deleted(staff_client, member_user, tenant):
    response = staff_client.delete(f"{MANAGE}/tenants/{tenant.pk}/")

    body = assert_problem(response, 409, "CONFLICT")
    assert "users" in body["detail"]
    assert Tenant.objects.filter(pk=tenant.pk).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Acme Bakery", "slug": "acme-2"}, "name"),
        ({"name": "New", "slug": "not a slug"}, "slug"),
        ({"name": "New", "slug": "new", "plan": "platinum"}, "plan"),
        ({"name": "New", "slug": "new", "read_only": True}, "read_only_reason"),
    ],
)
def test_bad_tenants_are_400s_naming_the_field(staff_client, tenant, body, field):
    response = staff_client.post(f"{MANAGE}/tenants/", body, format="json")

    assert field in assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert Tenant.objects.count() == 1


def test_tenants_filter_and_search(staff_client, tenant):
    Tenant.objects.create(name="Locked", slug="locked", read_only=True, read_only_reason=REASON)

    read_only = staff_client.get(f"{MANAGE}/tenants/", {"read_only": "true"}).json()
    searched = staff_client.get(f"{MANAGE}/tenants/", {"search": "acme"}).json()
    active = staff_client.get(f"{MANAGE}/tenants/", {"subscription_status": "active"}).json()

    assert [t["slug"] for t in read_only["results"]] == ["locked"]
    assert [t["slug"] for t in searched["results"]] == ["acme"]
    assert [t["slug"] for t in active["results"]] == ["acme"]


# --- Read-only mode ---------------------------------------------------------------------


def test_read_only_action_turns_it_on_with_a_reason(staff_client, tenant, django_capture_on_commit_callbacks):
    before = current_config_version()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            f"{MANAGE}/tenants/{tenant.pk}/read-only/",
            {"read_only": True, "reason": f"  {REASON} "},
            format="json",
        )

    assert response.status_code == 200, response.content
    assert response.json()["read_only"] is True
    assert response.json()["read_only_reason"] == REASON
    tenant.refresh_from_db()
    assert tenant.read_only and tenant.read_only_reason == REASON
    assert current_config_version() > before
    assert [e.get_change_message() for e in tenant_activity(tenant)][0] == (f"Turned read-only on: {REASON}")


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_read_only_action_requires_a_reason_to_turn_it_on(staff_client, tenant, reason):
    body = {"read_only": True} if reason is None else {"read_only": True, "reason": reason}

    response = staff_client.post(f"{MANAGE}/tenants/{tenant.pk}/read-only/", body, format="json")

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert errors == {"reason": [READ_ONLY_REASON_REQUIRED]}
    assert Tenant.objects.get(pk=tenant.pk).read_only is False


def test_read_only_action_turns_it_off_and_clears_the_reason(staff_client, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(read_only=True, read_only_reason=REASON)

    response = staff_client.post(
        f"{MANAGE}/tenants/{tenant.pk}/read-only/", {"read_only": False}, format="json"
    )

    assert response.status_code == 200
    tenant.refresh_from_db()
    assert not tenant.read_only and tenant.read_only_reason == ""


def test_read_only_action_needs_a_boolean(staff_client, tenant):
    response = staff_client.post(
        f"{MANAGE}/tenants/{tenant.pk}/read-only/", {"reason": REASON}, format="json"
    )

    assert "read_only" in assert_problem(response, 400, "VALIDATION_ERROR")["errors"]


def test_patch_read_only_needs_a_reason_too(staff_client, tenant):
    refused = staff_client.patch(f"{MANAGE}/tenants/{tenant.pk}/", {"read_only": True}, format="json")
    accepted = staff_client.patch(
        f"{MANAGE}/tenants/{tenant.pk}/",
        {"read_only": True, "read_only_reason": REASON},
        format="json",
    )

    errors = assert_problem(refused, 400, "VALIDATION_ERROR")["errors"]
    assert errors == {"read_only_reason": [READ_ONLY_REASON_REQUIRED]}
    assert accepted.status_code == 200 and accepted.json()["read_only_reason"] == REASON
    assert Tenant.objects.get(pk=tenant.pk).read_only is True


def test_patch_read_only_off_clears_the_reason(staff_client, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(read_only=True, read_only_reason=REASON)

    response = staff_client.patch(f"{MANAGE}/tenants/{tenant.pk}/", {"read_only": False}, format="json")

    assert response.status_code == 200 and response.json()["read_only_reason"] == ""
    assert Tenant.objects.get(pk=tenant.pk).read_only_reason == ""


def test_read_only_action_is_staff_only(member_client, tenant):
    response = member_client.post(
        f"{MANAGE}/tenants/{tenant.pk}/read-only/",
        {"read_only": True, "reason": REASON},
        format="json",
    )

    assert_problem(response, 403, "FORBIDDEN")
    assert Tenant.objects.get(pk=tenant.pk).read_only is False


# --- Subscriptions ----------------------------------------------------------------------


def test_subscription_crud(staff_client):
    Tenant.objects.create(name="Bakery Lyon", slug="bakery-lyon")
    period_end = (timezone.now() + timedelta(days=30)).replace(microsecond=0)

    created = staff_client.post(
        f"{MANAGE}/subscriptions/",
        {"tenant": "bakery-lyon", "status": "trialing", "current_period_end": period_end,
         "grace_days": 3},
        format="json",
    )  # fmt: skip
    sub_id = created.json()["id"]
    patched = staff_client.patch(f"{MANAGE}/subscriptions/{sub_id}/", {"status": "past_due"}, format="json")
    deleted = staff_client.delete(f"{MANAGE}/subscriptions/{sub_id}/")

    assert created.status_code == 201, created.content
    assert created.json()["tenant"] == "bakery-lyon"
    grace_end = timezone.datetime.fromisoformat(created.json()["grace_ends_at"])
    assert grace_end == period_end + timedelta(days=3)
    assert patched.status_code == 200 and patched.json()["status"] == "past_due"
    assert deleted.status_code == 204 and not Subscription.objects.exists()


def test_subscriptions_filter_by_tenant_and_status(staff_client, tenant):
    other = Tenant.objects.create(name="Lapsed", slug="lapsed")
    Subscription.objects.create(
        tenant=other, status="canceled", current_period_end=timezone.now() - timedelta(days=60)
    )

    by_tenant = staff_client.get(f"{MANAGE}/subscriptions/", {"tenant": "lapsed"}).json()
    by_status = staff_client.get(f"{MANAGE}/subscriptions/", {"status": "active"}).json()
    bad = staff_client.get(f"{MANAGE}/subscriptions/", {"status": "paused"})

    assert [s["tenant"] for s in by_tenant["results"]] == ["lapsed"]
    assert [s["tenant"] for s in by_status["results"]] == ["acme"]
    assert "status" in assert_problem(bad, 400, "VALIDATION_ERROR")["errors"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({}, "tenant"),  # acme already has one: one subscription per tenant
        ({"tenant": "lyon", "status": "paused"}, "status"),
        ({"tenant": "lyon", "grace_days": -1}, "grace_days"),
        ({"tenant": "lyon", "current_period_end": "next week"}, "current_period_end"),
    ],
)
def test_bad_subscriptions_are_400s_naming_the_field(staff_client, tenant, change, field):
    Tenant.objects.create(name="Lyon", slug="lyon")
    body = {"tenant": "acme", "current_period_end": timezone.now().isoformat(), **change}

    response = staff_client.post(f"{MANAGE}/subscriptions/", body, format="json")

    assert field in assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert Subscription.objects.count() == 1


def test_api_changes_show_in_the_tenant_history(staff_client, tenant):
    staff_client.patch(f"{MANAGE}/subscriptions/{tenant.subscription.pk}/", {"grace_days": 1}, format="json")

    [entry] = tenant_activity(tenant)
    assert entry.get_change_message() == "Changed grace_days through the API."
    assert entry.user.username == "staffer"
