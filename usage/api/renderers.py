"""CSV export of usage rows (`?format=csv` or `Accept: text/csv`)."""

from __future__ import annotations

import csv
import io

from django.http import Http404
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer

from usage.report import REPORT_FIELDS

__all__ = ["FormatParameterNegotiation", "UsageCSVRenderer"]


class UsageCSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=REPORT_FIELDS, extrasaction="ignore", lineterminator="\r\n"
        )
        writer.writeheader()
        for row in data or ():
            writer.writerow({name: "" if value is None else value for name, value in row.items()})
        return buffer.getvalue().encode(self.charset)


class FormatParameterNegotiation(DefaultContentNegotiation):
    """An unknown `?format=` is a 400 naming the parameter (DRF itself would answer 404)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404 as exc:
            formats = ", ".join(sorted({renderer.format for renderer in renderers}))
            raise ValidationError({"format": [f"Use one of: {formats}."]}) from exc
