"""CSV export of usage rows (`?format=csv` or `Accept: text/csv`)."""

from __future__ import annotations

import csv
import io

from rest_framework.renderers import BaseRenderer

from usage.report import REPORT_FIELDS

__all__ = ["UsageCSVRenderer"]


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
