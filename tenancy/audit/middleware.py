"""Who is acting, and from where, for the audit trail of the changes a request makes."""

from __future__ import annotations

from tenancy.audit.trail import audit_context, source_for_path

__all__ = ["AuditContextMiddleware"]


class AuditContextMiddleware:
    """Attribute the request's saves to its user, its source (admin or api) and its request id.

    Placed after the authentication middleware; the user is read when an event is written,
    so a token that DRF authenticates inside the view counts too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with audit_context(source_for_path(request.path_info), request=request):
            return self.get_response(request)
