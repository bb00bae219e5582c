"""Thin Celery tasks over alerts.notifications.

Retries are scheduled explicitly (a new message with a countdown) rather than with
`Task.retry`, so the attempt count lives in the delivery row and eager mode behaves like
a worker.
"""

from celery import shared_task

from alerts.notifications import DeliveryFailed, create_deliveries, deliver, retry_delay


@shared_task(ignore_result=True)
def route_alert_task(alert_id: int) -> None:
    for delivery_id in create_deliveries(alert_id):
        deliver_notification_task.delay(delivery_id)


@shared_task(ignore_result=True)
def deliver_notification_task(delivery_id: int) -> None:
    try:
        deliver(delivery_id)
    except DeliveryFailed as failure:
        if failure.retryable:
            deliver_notification_task.apply_async((delivery_id,), countdown=retry_delay(failure.attempts))
