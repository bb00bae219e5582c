"""The alerts management API: notification rules (destination checked per channel), alerts."""

from __future__ import annotations

import pytest

from alerts.models import Alert, NotificationRule
from tenancy.models import Tenant
from tests.control_plane import assert_problem

MANAGE = "/api/manage"


@pytest.fixture
def other_tenant(db):
    return Tenant.objects.create(name="Bakery Sevilla", slug="sevilla")


# --- Notification rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "destination"),
    [
        ("email", "ops@acme.example"),
        ("webhook", "http://127.0.0.1:9200/hooks/alerts"),
        ("whatsapp", "+34600111222"),
        ("sse", ""),
    ],
)
def test_a_rule_for_each_channel_is_created(staff_client, tenant, channel, destination):
    response = staff_client.post(
        f"{MANAGE}/notification-rules/",
        {"tenant": "acme", "min_severity": "error", "channel": channel,
         "destination": destination},
        format="json",
    )  # fmt: skip

    assert response.status_code == 201, response.content
    assert response.json()["tenant"] == "acme" and response.json()["channel"] == channel
    rule = NotificationRule.objects.get()
    assert (rule.tenant, rule.min_severity, rule.destination) == (tenant, "error", destination)


def test_rule_update_and_delete(staff_client, tenant):
    rule = NotificationRule.objects.create(tenant=tenant, channel="email", destination="a@b.example")

    patched = staff_client.patch(f"{MANAGE}/notification-rules/{rule.pk}/", {"enabled": False}, format="json")
    deleted = staff_client.delete(f"{MANAGE}/notification-rules/{rule.pk}/")

    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert deleted.status_code == 204 and not NotificationRule.objects.exists()


@pytest.mark.parametrize(
    ("channel", "destination"),
    [
        ("email", "not-an-email"),
        ("webhook", "http://169.254.169.254/latest/meta-data"),
        ("webhook", "ftp://127.0.0.1/hook"),
        ("whatsapp", "600111222"),
        ("sse", "ops@acme.example"),
    ],
)
def test_a_destination_that_does_not_suit_the_channel_is_a_400(staff_client, tenant, channel, destination):
    response = staff_client.post(
        f"{MANAGE}/notification-rules/",
        {"tenant": "acme", "channel": channel, "destination": destination},
        format="json",
    )

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert list(errors) == ["destination"]
    assert not NotificationRule.objects.exists()


def test_changing_only_the_channel_revalidates_the_destination(staff_client, tenant):
    rule = NotificationRule.objects.create(tenant=tenant, channel="email", destination="a@b.example")

    response = staff_client.patch(
        f"{MANAGE}/notification-rules/{rule.pk}/", {"channel": "whatsapp"}, format="json"
    )

    assert "destination" in assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert NotificationRule.objects.get(pk=rule.pk).channel == "email"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant": "nope", "channel": "sse"}, "tenant"),
        ({"tenant": "acme", "channel": "pigeon"}, "channel"),
        ({"tenant": "acme", "channel": "sse", "min_severity": "meh"}, "min_severity"),
    ],
)
def test_bad_rule_fields_are_400s_naming_the_field(staff_client, tenant, body, field):
    response = staff_client.post(f"{MANAGE}/notification-rules/", body, format="json")

    assert field in assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert not NotificationRule.objects.exists()


def test_rules_filter_by_tenant_and_channel(staff_client, tenant, other_tenant):
    NotificationRule.objects.create(tenant=tenant, channel="email", destination="a@b.example")
    NotificationRule.objects.create(tenant=tenant, channel="sse")
    NotificationRule.objects.create(tenant=other_tenant, channel="sse")

    acme = staff_client.get(f"{MANAGE}/notification-rules/", {"tenant": "acme"}).json()
    sse = staff_client.get(f"{MANAGE}/notification-rules/", {"tenant": "sevilla", "channel": "sse"}).json()

    assert sorted(r["channel"] for r in acme["results"]) == ["email", "sse"]
    assert [(r["tenant"], r["channel"]) for r in sse["results"]] == [("sevilla", "sse")]


# --- Alerts -----------------------------------------------------------------------------


def test_staff_list_every_tenants_alerts_newest_first_and_filter_by_tenant(
    staff_client, tenant, other_tenant
):
    Alert.objects.create(tenant=tenant, severity="info", message="oven warm")
    Alert.objects.create(tenant=other_tenant, severity="critical", message="flour out")
    Alert.objects.create(tenant=tenant, severity="warning", message="oven hot", service="sales")

    everything = staff_client.get(f"{MANAGE}/alerts/").json()
    acme = staff_client.get(f"{MANAGE}/alerts/", {"tenant": "acme"}).json()
    critical = staff_client.get(f"{MANAGE}/alerts/", {"severity": "critical"}).json()

    assert [a["message"] for a in everything["results"]] == ["oven hot", "flour out", "oven warm"]
    assert [a["message"] for a in acme["results"]] == ["oven hot", "oven warm"]
    assert acme["results"][0]["service"] == "sales" and acme["results"][0]["tenant"] == "acme"
    assert [a["tenant"] for a in critical["results"]] == ["sevilla"]


def test_an_alert_is_retrieved_by_id(staff_client, tenant):
    alert = Alert.objects.create(tenant=tenant, severity="error", message="kiln down")

    response = staff_client.get(f"{MANAGE}/alerts/{alert.pk}/")

    assert response.status_code == 200
    assert response.json()["message"] == "kiln down" and response.json()["severity"] == "error"


def test_an_unknown_alert_is_a_404_problem(staff_client, db):
    assert_problem(staff_client.get(f"{MANAGE}/alerts/424242/"), 404, "NOT_FOUND")


def test_alerts_are_read_only_here(staff_client, tenant):
    alert = Alert.objects.create(tenant=tenant, severity="error", message="kiln down")

    created = staff_client.post(f"{MANAGE}/alerts/", {"severity": "info", "message": "x"}, format="json")
    deleted = staff_client.delete(f"{MANAGE}/alerts/{alert.pk}/")

    assert_problem(created, 405, "METHOD_NOT_ALLOWED")
    assert_problem(deleted, 405, "METHOD_NOT_ALLOWED")
    assert Alert.objects.count() == 1
