"""Notification routing and delivery: email, signed webhooks with retries and dead letters, WhatsApp."""

import hashlib
import hmac
import json

import pytest
from django.core import mail

from alerts.models import Alert, NotificationDelivery, NotificationRule
from alerts.notifications import MAX_ATTEMPTS, retry_delay
from tests.live import RecordingUpstream


@pytest.fixture
def receiver():
    server = RecordingUpstream().start()
    yield server
    server.stop()


def raise_alert(tenant, severity="error", message="oven 3 is overheating"):
    from alerts.publishing import publish_alert

    alert = Alert.objects.create(tenant=tenant, severity=severity, message=message, service="sales")
    publish_alert(alert)
    return alert


def test_webhook_is_signed_and_the_signature_verifies(transactional_db, tenant, receiver, settings):
    settings.WEBHOOK_SIGNING_SECRET = "whsec-test"
    NotificationRule.objects.create(
        tenant=tenant, channel="webhook", destination=f"{receiver.url}/hook", min_severity="warning"
    )
    alert = raise_alert(tenant)
    hit = receiver.hits("/hook")[0]
    timestamp = hit.headers["x-gateway-timestamp"]
    expected = hmac.new(b"whsec-test", timestamp.encode() + b"." + hit.body, hashlib.sha256).hexdigest()
    assert hit.headers["x-gateway-signature"] == f"sha256={expected}"
    payload = json.loads(hit.body)
    assert payload["alert_id"] == alert.pk
    assert payload["severity"] == "error"
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)


def test_failing_webhook_is_retried_then_dead_lettered(transactional_db, tenant, receiver, monkeypatch):
    from alerts.tasks import deliver_notification_task

    # Eager mode runs a retry at once; record the countdown each retry was scheduled with.
    countdowns = []
    schedule = deliver_notification_task.apply_async

    def recording_schedule(args=None, kwargs=None, countdown=None, **options):
        countdowns.append(countdown)
        return schedule(args, kwargs, countdown=countdown, **options)

    monkeypatch.setattr(deliver_notification_task, "apply_async", recording_schedule)
    NotificationRule.objects.create(
        tenant=tenant, channel="webhook", destination=f"{receiver.url}/status/500"
    )
    raise_alert(tenant)
    assert len(receiver.hits("/status/500")) == MAX_ATTEMPTS
    # The first try is sent at once (no countdown); each retry waits twice as long as the last.
    retries = [c for c in countdowns if c is not None]
    assert retries == [retry_delay(attempt) for attempt in range(1, MAX_ATTEMPTS)]
    assert retries == sorted(retries) and len(set(retries)) == len(retries)
    delivery = NotificationDelivery.objects.get()
    assert delivery.status == "dead"
    assert delivery.attempts == MAX_ATTEMPTS
    assert delivery.last_error == "HTTP 500"


def test_backoff_grows_exponentially_and_is_capped():
    delays = [retry_delay(attempt) for attempt in range(1, 12)]
    assert delays[:4] == [2, 4, 8, 16]
    assert all(later >= earlier for earlier, later in zip(delays, delays[1:], strict=False))
    assert max(delays) == 300


def test_email_and_minimum_severity(transactional_db, tenant):
    NotificationRule.objects.create(
        tenant=tenant, channel="email", destination="ops@acme.example", min_severity="error"
    )
    raise_alert(tenant, severity="warning", message="just a warning")
    assert mail.outbox == []
    raise_alert(tenant, severity="critical", message="the oven is on fire")
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@acme.example"]
    assert "the oven is on fire" in mail.outbox[0].body
    assert "[CRITICAL]" in mail.outbox[0].subject


def test_whatsapp_goes_to_a_cloud_api_compatible_url(transactional_db, tenant, receiver, settings):
    settings.WHATSAPP_API_URL = f"{receiver.url}/whatsapp/v17.0"
    settings.WHATSAPP_PHONE_NUMBER_ID = "1234"
    settings.WHATSAPP_TOKEN = "wa-token"
    NotificationRule.objects.create(tenant=tenant, channel="whatsapp", destination="+34600111222")
    raise_alert(tenant)
    hit = receiver.hits("/whatsapp/v17.0/1234/messages")[0]
    body = json.loads(hit.body)
    assert body["messaging_product"] == "whatsapp"
    assert body["to"] == "34600111222"
    assert "oven 3" in body["text"]["body"]
    assert hit.headers["authorization"] == "Bearer wa-token"


def test_other_tenants_rules_do_not_fire(transactional_db, tenant, receiver):
    from tenancy.models import Tenant

    other = Tenant.objects.create(name="Other", slug="other")
    NotificationRule.objects.create(tenant=other, channel="webhook", destination=f"{receiver.url}/hook")
    raise_alert(tenant)
    assert receiver.hits() == []


def test_webhook_to_the_metadata_address_is_refused_at_save(db, tenant):
    from django.core.exceptions import ValidationError

    rule = NotificationRule(tenant=tenant, channel="webhook", destination="http://169.254.169.254/latest")
    with pytest.raises(ValidationError):
        rule.full_clean()
