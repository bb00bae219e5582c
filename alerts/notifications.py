"""Notification routing and delivery (SPEC section 9), testable without Celery.

An alert is matched against the tenant's rules (minimum severity -> channel); each match
becomes a NotificationDelivery that a Celery task delivers: email through Django's email
backend, webhooks HMAC-SHA256-signed over httpx, WhatsApp through a Cloud API-compatible
URL. Failures are retried with exponential backoff and dead-lettered after the last try.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from alerts.choices import SEVERITY_RANK, Channel, DeliveryStatus
from alerts.models import Alert, NotificationDelivery, NotificationRule
from gateway_project.core.outbound import OutboundRefused, check_url, outbound_client

__all__ = [
    "MAX_ATTEMPTS",
    "DeliveryFailed",
    "create_deliveries",
    "deliver",
    "retry_delay",
    "webhook_signature",
]

logger = logging.getLogger("gateway.notifications")

MAX_ATTEMPTS = 5
_BACKOFF_BASE_SECONDS = 2
_BACKOFF_CAP_SECONDS = 300
_DELIVERY_TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=10.0, pool=3.0)
SIGNATURE_HEADER = "X-Gateway-Signature"
TIMESTAMP_HEADER = "X-Gateway-Timestamp"


class DeliveryFailed(Exception):
    """The channel refused or could not be reached; `retryable` until the last attempt."""

    def __init__(self, message: str, attempts: int = 0, retryable: bool = False) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.retryable = retryable


def retry_delay(attempt: int) -> int:
    """Seconds before attempt `attempt + 1`: 2, 4, 8, 16... capped at five minutes."""
    return min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS**attempt)


def create_deliveries(alert_id: int) -> list[int]:
    """One pending delivery per enabled rule whose minimum severity the alert reaches."""
    alert = Alert.objects.select_related("tenant").get(pk=alert_id)
    rank = SEVERITY_RANK[alert.severity]
    rules = NotificationRule.objects.filter(tenant=alert.tenant, enabled=True).exclude(channel=Channel.SSE)
    matched = [rule for rule in rules if SEVERITY_RANK[rule.min_severity] <= rank]
    return [NotificationDelivery.objects.create(rule=rule, alert=alert).pk for rule in matched]


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over "<timestamp>.<body>" (Stripe-style, replay-resistant)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _payload(alert: Alert) -> dict:
    from alerts.publishing import event_of

    return event_of(alert)


def _send_email(delivery: NotificationDelivery) -> None:
    alert = delivery.alert
    send_mail(
        subject=f"[{alert.severity.upper()}] {alert.tenant.name}: {alert.message[:80]}",
        message=f"{alert.message}\n\nService: {alert.service or '-'}\nTime: {alert.created_at.isoformat()}",
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[delivery.rule.destination],
    )


def _post(url: str, body: bytes, headers: dict[str, str]) -> None:
    """POST through the outbound guard: the address dialled is checked at connect time,
    so a destination whose DNS now points at the metadata address is refused."""
    try:
        check_url(url)
    except OutboundRefused as exc:
        raise DeliveryFailed(exc.message) from exc
    try:
        with outbound_client(timeout=_DELIVERY_TIMEOUT) as client:
            response = client.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code >= 300:
        raise DeliveryFailed(f"HTTP {response.status_code}")


def _send_webhook(delivery: NotificationDelivery) -> None:
    body = json.dumps(_payload(delivery.alert), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    _post(
        delivery.rule.destination,
        body,
        {
            SIGNATURE_HEADER: webhook_signature(settings.WEBHOOK_SIGNING_SECRET, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
            "X-Gateway-Delivery": str(delivery.pk),
        },
    )


def _send_whatsapp(delivery: NotificationDelivery) -> None:
    alert = delivery.alert
    body = json.dumps(
        {
            "messaging_product": "whatsapp",
            "to": delivery.rule.destination.lstrip("+"),
            "type": "text",
            "text": {"body": f"[{alert.severity.upper()}] {alert.message}"[:4096]},
        }
    ).encode()
    url = f"{settings.WHATSAPP_API_URL.rstrip('/')}/{settings.WHATSAPP_PHONE_NUMBER_ID}/messages"
    headers = {"Authorization": f"Bearer {settings.WHATSAPP_TOKEN}"} if settings.WHATSAPP_TOKEN else {}
    _post(url, body, headers)


_SENDERS = {
    Channel.EMAIL: _send_email,
    Channel.WEBHOOK: _send_webhook,
    Channel.WHATSAPP: _send_whatsapp,
}


def deliver(delivery_id: int) -> NotificationDelivery:
    """One attempt. Raises DeliveryFailed with the attempt recorded; the caller retries or not."""
    delivery = NotificationDelivery.objects.select_related("rule", "alert__tenant").get(pk=delivery_id)
    if delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD):
        return delivery
    delivery.attempts += 1
    try:
        _SENDERS[delivery.rule.channel](delivery)
    except Exception as exc:
        delivery.last_error = str(exc)[:500]
        delivery.status = DeliveryStatus.RETRYING if delivery.attempts < MAX_ATTEMPTS else DeliveryStatus.DEAD
        delivery.save(update_fields=["attempts", "last_error", "status", "updated_at"])
        if delivery.status == DeliveryStatus.DEAD:
            logger.error(
                "notification dead-lettered",
                extra={"delivery": delivery.pk, "error": delivery.last_error},
            )
        raise DeliveryFailed(
            delivery.last_error, delivery.attempts, delivery.status == DeliveryStatus.RETRYING
        ) from exc
    delivery.status = DeliveryStatus.DELIVERED
    delivery.delivered_at = timezone.now()
    delivery.last_error = ""
    delivery.save(update_fields=["attempts", "last_error", "status", "delivered_at", "updated_at"])
    return delivery
