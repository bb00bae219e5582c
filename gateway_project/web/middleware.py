"""Django middleware shared by every gateway-served page and endpoint."""

from __future__ import annotations

from http import HTTPStatus

from gateway_project.core.problems import PROBLEM_CONTENT_TYPE
from gateway_project.core.request_id import accept_request_id
from gateway_project.web import problems

__all__ = ["NotFoundProblemMiddleware", "RequestIdMiddleware"]

HTML_CONTENT_TYPE = "text/html"


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


class NotFoundProblemMiddleware:
    """An HTML 404 becomes the NOT_FOUND problem wherever `handler404` would answer with one.

    With DEBUG on (`make run`) Django answers an unknown URL with its technical 404 page and
    never calls `handler404`, so an API client under /api/ got HTML instead of problem+json.
    Pages a browser asks for keep their HTML 404.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code != HTTPStatus.NOT_FOUND or not _is_html(response):
            return response
        replacement = problems.handler404(request)
        return replacement if _is_problem(replacement) else response


def _is_html(response) -> bool:
    return response.get("Content-Type", "").startswith(HTML_CONTENT_TYPE)


def _is_problem(response) -> bool:
    return response.get("Content-Type", "").startswith(PROBLEM_CONTENT_TYPE)
