"""The Celery app: health sweeps on beat, notification delivery on workers."""

import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect(dispatch_uid="gateway-logging")
def use_gateway_logging(**kwargs) -> None:
    """Workers log through settings.LOGGING (masked, one format with the gateway), not Celery's own."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
