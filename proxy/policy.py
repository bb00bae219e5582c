"""One credential resolver and one policy chain for every door (SPEC section 16).

Doors: service HTTP paths (`proxy.pipeline`), WebSocket upgrades (`proxy.websocket`), the
SSE stream (`alerts.stream`) and the gateway's own endpoints that take a client token
(`EndpointDoor`). Each builds an Exchange and runs `POLICY`, so a credential, a lapsed
tenant, an IP list, a rate policy, a role or a read-only flag gets the same answer on
every door. Long-lived connections are checked again by `recheck` whenever the registry
or the revocation list changes (`proxy.live`).
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from gateway_project.core.request_id import accept_request_id, continue_traceparent
from proxy.auth import AUTH_FAILED, Identity, identity_from_api_key, role_satisfies
from proxy.breaker import BreakerSettings
from proxy.exchange import Exchange, Rejection
from proxy.networks import refuse_unlisted_network
from proxy.snapshot import ServiceEntry
from proxy.tenants import check_tenant
from tenancy.authentication import IDENTITY_SCOPE_KEY

__all__ = [
    "POLICY",
    "RECHECK",
    "EndpointDoor",
    "assign_request_id",
    "authenticate",
    "authorize",
    "check_client_network",
    "enforce_rate_limits",
    "gateway_endpoint",
    "recheck",
    "run_steps",
]

# A token in the query string can end up in logs and history: only short-lived ones.
QUERY_TOKEN_MAX_REMAINING_SECONDS = 3600
_CHALLENGE = [(b"www-authenticate", b'Bearer realm="gateway"')]


def assign_request_id(exchange: Exchange) -> None:
    """1. (every door) Request id (client's if well-formed) and W3C traceparent for the upstream hop."""
    index = exchange.header_index
    exchange.request_id = accept_request_id(index.get(b"x-request-id"))
    exchange.traceparent = continue_traceparent(index.get(b"traceparent"))
    client = exchange.scope.get("client")
    peer = client[0] if client else ""
    exchange.client_ip, exchange.peer_trusted = exchange.runtime.client_ips.resolve(
        peer, index.get(b"x-forwarded-for")
    )


# --- the credential resolver ------------------------------------------------------------


def _query_token(exchange: Exchange) -> str:
    """`?access_token=`: browsers cannot set headers on EventSource or WebSocket."""
    if not exchange.query_token_allowed or b"access_token" not in exchange.query:
        return ""
    values = parse_qs(exchange.query.decode("latin-1")).get("access_token")
    return values[0] if values else ""


def resolve_credentials(exchange: Exchange):
    """The caller's Identity, None, or an awaitable of either (an external issuer's token).

    Bearer JWT (the gateway's own or a configured issuer's), then X-API-Key, then a
    short-lived `?access_token=` where the door allows one.
    """
    runtime = exchange.runtime
    index = exchange.header_index
    authorization = index.get(b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return None
        return _verify_token(runtime, token.strip().decode("latin-1"))
    if (api_key := index.get(b"x-api-key")) is not None:
        identity = identity_from_api_key(runtime.snapshot, api_key)
        if identity is not None:
            runtime.api_key_usage[identity.api_key_id] = time.time()
        return identity
    token = _query_token(exchange)
    if not token:
        return None
    identity = _verify_token(runtime, token)
    if (
        isinstance(identity, Identity)
        and identity.expires_at - time.time() > QUERY_TOKEN_MAX_REMAINING_SECONDS
    ):
        return None
    return identity


def _verify_token(runtime, token: str):
    pending = runtime.external_tokens.verification_for(token)
    if pending is not None:  # an external issuer's token: JWKS or introspection (awaited)
        return pending
    return runtime.token_verifier.verify(token)


# --- the policy chain -------------------------------------------------------------------


def check_client_network(exchange: Exchange) -> None:
    """The service's IP allow/deny lists, on the client IP resolved through TRUSTED_PROXIES."""
    service = exchange.service
    if service.ip_allow or service.ip_deny:
        refuse_unlisted_network(exchange, service.ip_allow, service.ip_deny)


def authenticate(exchange: Exchange):
    """Attach the caller's identity; refuse with one uniform 401 when it cannot be established."""
    service = exchange.service
    if not service.auth_required or (
        service.public_paths and service.is_public(exchange.path, exchange.prefix)
    ):
        return None
    resolved = resolve_credentials(exchange)
    if resolved is None or isinstance(resolved, Identity):
        return _accept(exchange, resolved)
    return _settle(exchange, resolved)


async def _settle(exchange: Exchange, pending) -> None:
    _accept(exchange, await pending)


def _accept(exchange: Exchange, identity: Identity | None) -> None:
    """One place decides: revoked or missing identities get the uniform 401."""
    runtime = exchange.runtime
    if identity is not None and identity.jti and identity.jti in runtime.revoked_tokens:
        identity = None
    runtime.metrics.count_auth(identity is not None)
    if identity is None:
        raise Rejection("AUTH_ERROR", AUTH_FAILED, _CHALLENGE)
    exchange.identity = identity


def enforce_rate_limits(exchange: Exchange):
    """Every matching rate policy, checked in one round trip."""
    limiter = exchange.runtime.limiter
    return limiter.enforce(exchange) if limiter is not None else None


def authorize(exchange: Exchange) -> None:
    """The service's roles/scopes for reads or writes (SPEC section 4 step 7)."""
    roles, scopes = exchange.service.required_for(exchange.writes)
    if not roles and not scopes:
        return
    identity = exchange.identity
    if identity is None:
        raise Rejection("AUTH_ERROR", AUTH_FAILED, _CHALLENGE)
    if roles and not role_satisfies(identity.roles, roles):
        raise Rejection("FORBIDDEN", "Your role does not allow this operation on this service.")
    if scopes and not scopes <= identity.scopes:
        raise Rejection("FORBIDDEN", "Your credentials lack a scope this operation requires.")


# In this order on every door: SPEC section 4 steps 4b-8.
POLICY = (check_client_network, authenticate, enforce_rate_limits, authorize, check_tenant)


async def run_steps(exchange: Exchange, steps) -> None:
    for step in steps:
        pending = step(exchange)
        if pending is not None:
            await pending


# --- long-lived connections follow the registry ----------------------------------------


def recheck_credentials(exchange: Exchange) -> None:
    """A connection's credential is still good: token not revoked, API key not revoked or gone."""
    identity = exchange.identity
    if identity is None:
        return
    runtime = exchange.runtime
    if identity.jti and identity.jti in runtime.revoked_tokens:
        raise Rejection("AUTH_ERROR", "The credentials were revoked.", _CHALLENGE)
    if identity.api_key_id is not None:
        entry = runtime.snapshot.api_keys.get(identity.api_key_hash)
        if (
            entry is None
            or entry.revoked
            or (entry.expires_at is not None and entry.expires_at <= time.time())
        ):
            raise Rejection("AUTH_ERROR", "The API key was revoked.", _CHALLENGE)


def recheck_service(exchange: Exchange) -> None:
    """The service is still registered, enabled and (for WebSockets) still takes them."""
    service = exchange.service
    if service.id <= 0:
        return  # a gateway endpoint, not a registered service
    current = exchange.runtime.snapshot.services_by_prefix.get(service.prefix)
    if (
        current is None
        or current.id != service.id
        or not current.enabled
        or (exchange.door == "websocket" and not current.websocket_enabled)
    ):
        raise Rejection("SERVICE_UNAVAILABLE", f"The {service.slug} service was disabled.")
    exchange.service = current


# Everything of POLICY that can change under an open connection (not the rate limit).
RECHECK = (recheck_service, check_client_network, recheck_credentials, authorize, check_tenant)


def recheck(exchange: Exchange) -> Rejection | None:
    """Run RECHECK against the current snapshot; the refusal, or None if still admitted."""
    exchange.tenant = None
    try:
        for step in RECHECK:
            step(exchange)
    except Rejection as rejection:
        return rejection
    return None


# --- the gateway's own endpoints --------------------------------------------------------

_NOTHING: frozenset[str] = frozenset()


def gateway_endpoint(id: int, slug: str, prefix: str, read_scopes: frozenset[str] = _NOTHING) -> ServiceEntry:
    """A gateway endpoint seen as a service by the policy chain: authentication required,
    global and tenant rate policies apply (no registered service has a non-positive id)."""
    return ServiceEntry(
        id=id,
        slug=slug,
        prefix=prefix,
        upstream_path="",
        load_balancing="round_robin",
        connect_timeout=1.0,
        read_timeout=1.0,
        retries=0,
        allowed_methods=frozenset({"GET", "HEAD", "OPTIONS", "POST"}),
        allow_header="GET, HEAD, OPTIONS, POST",
        auth_required=True,
        public_paths=(),
        read_roles=_NOTHING,
        read_scopes=read_scopes,
        write_roles=_NOTHING,
        write_scopes=_NOTHING,
        breaker=BreakerSettings(),
        health_path="",
        health_interval=0,
        websocket_enabled=False,
        max_body_bytes=1024 * 1024,
        enabled=True,
        targets=(),
        has_demo_targets=False,
    )


ALERTS_ENDPOINT = gateway_endpoint(0, "alerts", "/api/v1/alerts", read_scopes=frozenset({"read"}))
# Paths of Django endpoints that take a client token, and the service the chain sees.
ENDPOINTS = {
    "/api/v1/alerts": ALERTS_ENDPOINT,
    "/api/v1/geocode": gateway_endpoint(-1, "geocode", "/api/v1/geocode"),
    "/api/v1/users/me": gateway_endpoint(-2, "users", "/api/v1/users"),
}


class EndpointDoor:
    """The policy chain in front of a Django endpoint that takes a client token.

    A request carrying a bearer token or an API key runs POLICY here; a refusal is the
    same problem as on every other door, an admitted request reaches Django with the
    verified identity in `scope["gateway.identity"]`. Session and staff-token callers
    (no client token) go straight to Django, whose own authentication serves them.
    """

    def __init__(self, runtime, django_application) -> None:
        self.runtime = runtime
        self.django = django_application

    async def __call__(self, scope, receive, send) -> None:
        service = ENDPOINTS[scope["path"]]
        exchange = Exchange(self.runtime, scope, receive, send, door="endpoint")
        index = exchange.header_index
        bearer = index.get(b"authorization", b"")[:7].lower() == b"bearer "
        if not bearer and b"x-api-key" not in index:
            return await self.django(scope, receive, send)
        assign_request_id(exchange)
        exchange.service, exchange.prefix, exchange.path = service, service.prefix, scope["path"]
        try:
            await run_steps(exchange, POLICY)
        except Rejection as rejection:
            await self.runtime.respond.problem(exchange, rejection)
            self.runtime.respond.finish(exchange)
            return
        limit_headers = exchange.response_headers

        async def send_with_limits(message):
            if message["type"] == "http.response.start" and limit_headers:
                message = {**message, "headers": [*message.get("headers", ()), *limit_headers]}
            await send(message)

        await self.django({**scope, IDENTITY_SCOPE_KEY: exchange.identity}, receive, send_with_limits)
