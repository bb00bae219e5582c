"""Django-side rendering of the gateway's problem catalog (gateway_project.core.problems).

The management API, the auth endpoints and Django's error handlers answer with the same
RFC 9457 documents as the data plane.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from drf_spectacular.openapi import AutoSchema
from rest_framework import exceptions, serializers
from rest_framework.views import exception_handler as drf_default_handler

from gateway_project.core.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPES, problem_document
from gateway_project.core.request_id import new_request_id

__all__ = [
    "drf_exception_handler",
    "handler400",
    "handler403",
    "handler404",
    "handler500",
    "problem_page",
    "problem_response",
    "ProblemAutoSchema",
]

logger = logging.getLogger("gateway.problems")

_DRF_CODES = (
    (exceptions.ValidationError, "VALIDATION_ERROR"),
    (exceptions.ParseError, "INVALID_REQUEST"),
    (exceptions.UnsupportedMediaType, "INVALID_REQUEST"),
    (exceptions.NotAcceptable, "INVALID_REQUEST"),
    (exceptions.NotAuthenticated, "AUTH_ERROR"),
    (exceptions.AuthenticationFailed, "AUTH_ERROR"),
    (exceptions.PermissionDenied, "FORBIDDEN"),
    (exceptions.NotFound, "NOT_FOUND"),
    (exceptions.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (exceptions.Throttled, "RATE_LIMIT"),
)
_UNIFORM_AUTH_DETAIL = "Authentication credentials were missing or invalid."


def request_id_of(request: HttpRequest) -> str:
    return getattr(request, "request_id", "") or new_request_id()


def problem_response(
    request: HttpRequest, code: str, detail: str, status: int | None = None, **extra
) -> JsonResponse:
    document = problem_document(code, detail, request.path, request_id_of(request), **extra)
    if status is not None:
        document["status"] = status
    response = JsonResponse(
        document,
        status=document["status"],
        content_type=PROBLEM_CONTENT_TYPE,
        json_dumps_params={"separators": (",", ":")},
    )
    if code == "AUTH_ERROR":
        response["WWW-Authenticate"] = 'Bearer realm="gateway"'
    return response


def drf_exception_handler(exc, context):
    """Every DRF error as problem+json: field messages for 400s, one body for all 401s."""
    request = context.get("request")
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_default_handler(exc, context)
    if response is None:
        if isinstance(exc, Http404):
            return problem_response(request, "NOT_FOUND", "Not found.")
        logger.exception("unhandled error in management API")
        return problem_response(request, "INTERNAL_ERROR", "The request failed unexpectedly.")
    code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "INVALID_REQUEST")
    extra = {}
    if code == "VALIDATION_ERROR":
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        detail, extra["errors"] = "One or more fields are invalid.", errors
    elif code == "AUTH_ERROR":
        detail = _UNIFORM_AUTH_DETAIL
    else:
        detail = str(exc.detail) if hasattr(exc, "detail") else str(exc)
    problem = problem_response(request, code, detail, status=response.status_code, **extra)
    for header in ("Allow", "Retry-After"):
        if header in response:
            problem[header] = response[header]
    if response.status_code == 403 and code == "AUTH_ERROR":
        problem.status_code = 401
    return problem


def _wants_problem(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith("/api/") or "json" in accept and "html" not in accept


def handler400(request, exception=None):
    return problem_response(request, "INVALID_REQUEST", "The request could not be understood.")


def handler403(request, exception=None):
    if _wants_problem(request):
        return problem_response(request, "FORBIDDEN", "You may not access this resource.")
    return render(request, "errors/403.html", status=403)


def handler404(request, exception=None):
    if _wants_problem(request):
        return problem_response(request, "NOT_FOUND", f"Nothing is served at {request.path}.")
    return render(request, "errors/404.html", status=404)


def handler500(request):
    if _wants_problem(request):
        return problem_response(request, "INTERNAL_ERROR", "The request failed unexpectedly.")
    return render(request, "errors/500.html", status=500)


def problem_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The human-readable page every problem `type` URL points to."""
    problem = next((p for p in PROBLEM_TYPES.values() if p.slug == slug), None)
    if problem is None:
        raise Http404(slug)
    return render(request, "problems/detail.html", {"problem": problem})


def problem_index(request: HttpRequest) -> HttpResponse:
    problems = sorted(PROBLEM_TYPES.values(), key=lambda p: (p.status, p.code))
    return render(request, "problems/index.html", {"problems": problems})


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details, as every error of the gateway is answered."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField()
    code = serializers.CharField()
    request_id = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="Field messages (400 VALIDATION_ERROR).")


class ProblemAutoSchema(AutoSchema):
    """drf-spectacular's schema plus the problem+json errors every operation can answer, in a
    form that validators and client generators accept (see the overrides' docstrings).
    """

    _ERRORS = (
        (
            "400",
            "Invalid input or filter; `errors` names each field.",
            lambda self: (
                self.method in ("POST", "PUT", "PATCH")
                or bool(self._get_filter_parameters())
                or bool(self._get_format_parameters())
            ),
        ),
        ("401", "Missing or invalid credentials.", lambda self: True),
        ("403", "Not allowed for this user.", lambda self: True),
        # A view with several renderers takes ?format=, and an unknown format is a 404.
        ("404", "No such object.", lambda self: "{" in self.path or len(self.view.renderer_classes) > 1),
        ("409", "Conflicts with the current state.", lambda self: self.method == "DELETE"),
    )

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for status, description, applies in self._ERRORS:
            if status not in responses and applies(self):
                body = self._get_response_for_code(
                    ProblemSerializer, status, media_types=[PROBLEM_CONTENT_TYPE]
                )
                body["description"] = description
                responses[status] = body
        return responses

    def map_parsers(self) -> list[str]:
        """Only the view's preferred request type (its first parser: JSON for the management
        API, a form for the OAuth token endpoint). The others still parse, but a generated
        client given one schema under three types sends the last one, multipart, which cannot
        carry a service's nested targets.
        """
        return super().map_parsers()[:1]

    def _insert_field_validators(self, field, schema):
        """A blank-allowed field with a pattern becomes `oneOf: [pattern, empty]`, and
        drf-spectacular moves its `default` (usually "") into the pattern branch, where "" fails
        the pattern: openapi-spec-validator and client generators reject the whole document.
        The default describes the field, so it goes back beside the `oneOf`.
        """
        super()._insert_field_validators(field, schema)
        branches = schema.get("oneOf")
        if branches and isinstance(branches[0], dict) and "default" in branches[0]:
            schema["default"] = branches[0].pop("default")
