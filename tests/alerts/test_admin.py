"""The alerts admin: pages render, rules edit from the list, deliveries are read-only."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.utils.html import escape

from alerts.models import Alert, NotificationDelivery, NotificationRule
from tests.control_plane import admin_url


@pytest.fixture
def rule(tenant):
    return NotificationRule.objects.create(
        tenant=tenant,
        min_severity="error",
        channel="webhook",
        destination="http://127.0.0.1:9100/hooks/alerts",
    )


@pytest.fixture
def alert(tenant):
    return Alert.objects.create(tenant=tenant, severity="critical", message="Oven 3 is overheating")


@pytest.fixture
def delivery(rule, alert):
    return NotificationDelivery.objects.create(
        rule=rule, alert=alert, status="dead", attempts=5, last_error="HTTP 502 from webhook"
    )


@pytest.mark.parametrize(
    "model", [Alert, NotificationRule, NotificationDelivery], ids=lambda model: model.__name__
)
def test_changelist_and_change_form_render_for_staff(admin_client, delivery, model):
    obj = {Alert: delivery.alert, NotificationRule: delivery.rule, NotificationDelivery: delivery}[model]

    changelist = admin_client.get(admin_url(model, "changelist"))
    change = admin_client.get(admin_url(model, "change", obj.pk))

    assert changelist.status_code == 200
    assert change.status_code == 200
    assert changelist.context["cl"].result_count == 1
    assert escape(str(obj)) in change.content.decode()


def test_delivery_outcomes_are_listed(admin_client, delivery):
    page = admin_client.get(admin_url(NotificationDelivery, "changelist")).content.decode()

    assert "Dead-lettered" in page
    assert "HTTP 502 from webhook" in page
    assert '<td class="field-attempts">5</td>' in page


def test_deliveries_are_read_only(admin_client, delivery):
    change_url = admin_url(NotificationDelivery, "change", delivery.pk)

    page = admin_client.get(change_url).content.decode()
    attempt = admin_client.post(change_url, {"status": "delivered", "attempts": "1", "last_error": ""})

    assert 'name="_save"' not in page
    assert attempt.status_code == 403
    assert admin_client.get(admin_url(NotificationDelivery, "add")).status_code == 403
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("dead", 5)


def test_alert_page_shows_its_deliveries_and_cannot_be_edited(admin_client, delivery):
    page = admin_client.get(admin_url(Alert, "change", delivery.alert.pk)).content.decode()

    assert "HTTP 502 from webhook" in page
    assert 'name="_save"' not in page
    assert admin_client.get(admin_url(Alert, "add")).status_code == 403


def test_rules_are_disabled_from_the_list_and_the_change_is_logged(admin_client, rule):
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "form-0-id": rule.pk,
        "_save": "Save",
    }

    admin_client.post(admin_url(NotificationRule, "changelist"), data)

    rule.refresh_from_db()
    assert not rule.enabled
    entry = LogEntry.objects.get(object_id=str(rule.pk))
    assert entry.get_change_message() == "Changed Enabled."


def test_a_rule_with_a_bad_destination_is_refused(admin_client, tenant):
    response = admin_client.post(
        admin_url(NotificationRule, "add"),
        {
            "tenant": tenant.pk,
            "enabled": "on",
            "min_severity": "warning",
            "channel": "whatsapp",
            "destination": "0034 600",
        },
    )

    assert response.status_code == 200
    assert "E.164" in response.content.decode()
    assert not NotificationRule.objects.exists()


def test_deleting_a_rule_takes_its_delivery_history_with_it(admin_client, delivery):
    rule = delivery.rule

    admin_client.post(admin_url(NotificationRule, "delete", rule.pk), {"post": "yes"})

    assert not NotificationRule.objects.filter(pk=rule.pk).exists()
    assert not NotificationDelivery.objects.exists()
