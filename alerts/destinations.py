"""Validation of notification destinations per channel."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from alerts.choices import Channel
from registry.validators import validate_upstream_url

__all__ = ["validate_destination"]

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def validate_destination(channel: str, destination: str) -> None:
    if channel == Channel.EMAIL:
        validate_email(destination)
    elif channel == Channel.WEBHOOK:
        validate_upstream_url(destination)
    elif channel == Channel.WHATSAPP:
        if not _E164.match(destination or ""):
            raise ValidationError("Enter a phone number in E.164 form, e.g. +34600111222.")
    elif channel == Channel.SSE and destination:
        raise ValidationError("SSE rules have no destination: they stream to the tenant.")
