"""RFC 9457 problem details: the one catalog of error codes the gateway answers with.

Both the data plane and the Django side render errors from here, so a client sees the
same `type`, `title` and `code` whichever part of the gateway refused it, and every
`type` URL resolves to a human-readable page (`/problems/<code-in-kebab-case>`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPES",
    "ProblemType",
    "problem_bytes",
    "problem_document",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True, slots=True)
class ProblemType:
    code: str
    status: int
    title: str
    explanation: str

    @property
    def slug(self) -> str:
        return self.code.lower().replace("_", "-")

    @property
    def type_uri(self) -> str:
        return f"/problems/{self.slug}"


PROBLEM_TYPES: dict[str, ProblemType] = {
    problem.code: problem
    for problem in (
        ProblemType(
            "INVALID_REQUEST",
            400,
            "Invalid request",
            "The request was malformed or ambiguous (for example an encoded slash or "
            "dot segments in the path, both Content-Length and Transfer-Encoding, or "
            "duplicate Authorization headers) and was not forwarded.",
        ),
        ProblemType(
            "VALIDATION_ERROR",
            400,
            "Validation failed",
            "One or more fields are invalid; `errors` names each field and what is "
            "wrong with it. Nothing was saved.",
        ),
        ProblemType(
            "AUTH_ERROR",
            401,
            "Authentication required",
            "Send a valid `Authorization: Bearer <token>` or `X-API-Key` header. The "
            "response is the same whatever was wrong with the credentials.",
        ),
        ProblemType(
            "MFA_REQUIRED",
            401,
            "Second factor required",
            "The account requires a one-time code: repeat the login with `otp`.",
        ),
        ProblemType(
            "SUBSCRIPTION_INACTIVE",
            402,
            "Subscription inactive",
            "The tenant's subscription lapsed beyond its grace period. Renew it to restore access.",
        ),
        ProblemType(
            "FORBIDDEN",
            403,
            "Forbidden",
            "The caller is authenticated but lacks the role, scope or network access "
            "this operation requires.",
        ),
        ProblemType(
            "TENANT_READ_ONLY",
            403,
            "Tenant is read-only",
            "Staff placed the tenant in read-only mode; only GET, HEAD and OPTIONS are "
            "allowed. `detail` gives the reason.",
        ),
        ProblemType(
            "NOT_FOUND",
            404,
            "Not found",
            "No registered service or gateway endpoint matches this path.",
        ),
        ProblemType(
            "METHOD_NOT_ALLOWED",
            405,
            "Method not allowed",
            "The service does not accept this method; the `Allow` header lists those it does.",
        ),
        ProblemType(
            "REQUEST_TIMEOUT",
            408,
            "Request timeout",
            "The client announced a request body and then stopped sending it for longer "
            "than the gateway waits (`REQUEST_BODY_TIMEOUT`). The request was not completed "
            "upstream and the connection was closed.",
        ),
        ProblemType(
            "CONFLICT",
            409,
            "Conflict",
            "The change conflicts with the current state of the resource.",
        ),
        ProblemType(
            "PAYLOAD_TOO_LARGE",
            413,
            "Payload too large",
            "The request body exceeds the service's maximum body size.",
        ),
        ProblemType(
            "HEADERS_TOO_LARGE",
            431,
            "Request headers too large",
            "Too many request headers, or a header too large.",
        ),
        ProblemType(
            "RATE_LIMIT",
            429,
            "Rate limit exceeded",
            "Too many requests. Wait for the number of seconds in `Retry-After`; the "
            "`RateLimit` headers and `violated_policies` say which limits were hit.",
        ),
        ProblemType(
            "QUOTA_EXCEEDED",
            429,
            "Quota exceeded",
            "The tenant used its plan's request quota for this period. `Retry-After` says "
            "when the period resets; the `RateLimit` headers name the quota.",
        ),
        ProblemType(
            "TOO_MANY_CONNECTIONS",
            429,
            "Too many connections",
            "The tenant holds the maximum number of concurrent streams; close one first.",
        ),
        ProblemType(
            "INTERNAL_ERROR",
            500,
            "Internal error",
            "The gateway failed unexpectedly. The request id identifies the log line.",
        ),
        ProblemType(
            "PLUGIN_ERROR",
            500,
            "Plugin failed",
            "A plugin configured for this route raised an error or ran past its time limit; "
            "the request was not forwarded. Staff find the plugin's name in the gateway log "
            "under this request id.",
        ),
        ProblemType(
            "BAD_GATEWAY",
            502,
            "Bad gateway",
            "The upstream service could not be reached or broke the connection.",
        ),
        ProblemType(
            "SERVICE_UNAVAILABLE",
            503,
            "Service unavailable",
            "The service is disabled, has no enabled target, or a dependency the gateway needs is down.",
        ),
        ProblemType(
            "REQUEST_TERMINATED",
            503,
            "Request terminated",
            "The gateway answers this route itself (a request-termination plugin, for example "
            "during maintenance); `detail` says why. The upstream service was not called.",
        ),
        ProblemType(
            "CIRCUIT_OPEN",
            503,
            "Circuit open",
            "Every target of the service failed recently, so the gateway stopped "
            "sending traffic for a while. Retry after the number of seconds in "
            "`Retry-After`.",
        ),
        ProblemType(
            "UPSTREAM_TIMEOUT",
            504,
            "Upstream timeout",
            "The upstream service did not answer within the service's timeout.",
        ),
    )
}


def problem_document(
    code: str,
    detail: str,
    instance: str,
    request_id: str = "",
    **extra,
) -> dict:
    problem = PROBLEM_TYPES[code]
    document = {
        "type": problem.type_uri,
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
        "instance": instance,
        "code": problem.code,
        "request_id": request_id,
    }
    document.update(extra)
    return document


def problem_bytes(code: str, detail: str, instance: str, request_id: str = "", **extra) -> bytes:
    document = problem_document(code, detail, instance, request_id, **extra)
    return json.dumps(document, separators=(",", ":")).encode()
