"""Content negotiation whose refusals are problems like every other bad input.

DRF answers an unknown `?format=` with a bare 404, as if the URL did not exist; here it is a
400 naming the parameter and the formats the operation offers (the OpenAPI document lists
them as the parameter's enum).
"""

from __future__ import annotations

from django.http import Http404
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation

__all__ = ["ProblemContentNegotiation"]


class ProblemContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            formats = ", ".join(sorted({renderer.format for renderer in renderers}))
            raise ValidationError(
                {self.settings.URL_FORMAT_OVERRIDE: [f"Unknown format; use one of: {formats}."]}
            ) from None
