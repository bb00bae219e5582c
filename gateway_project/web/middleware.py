"""Django middleware shared by every gateway-served page and endpoint."""

from __future__ import annotations

from gateway_project.core.request_id import accept_request_id

__all__ = ["RequestIdMiddleware"]


class RequestIdMiddleware:
    """Accept or mint an X-Request-ID, expose it as `request.request_id`, echo it back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raw = request.META.get("HTTP_X_REQUEST_ID")
        request.request_id = accept_request_id(raw.encode("latin-1") if raw else None)
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response
