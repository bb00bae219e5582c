"""One policy for every door (SPEC section 16): each refusal case sent through the service's
HTTP path, a WebSocket upgrade, the SSE stream and a gateway endpoint that takes a client
token gets the same status and problem code, and nothing reaches the upstream (nor the
alert log)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.proxy.test_idp import AUDIENCE, ISSUER, ROLE_MAPPING, FakeIssuer, SigningKey, claims

DOORS = ("http", "websocket", "sse", "endpoint")
ADMITTED = {"http": 200, "websocket": 101, "sse": 200, "endpoint": 200}


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    code: str | None  # None: admitted
    writes: bool = False  # the request writes (an HTTP POST, POST /api/v1/alerts)
    doors: tuple[str, ...] = DOORS  # where the case means something


CASES = [
    Case("no token", 401, "AUTH_ERROR"),
    Case("bad token", 401, "AUTH_ERROR"),
    Case("external identity-provider token", 200, None),
    Case("lapsed tenant", 402, "SUBSCRIPTION_INACTIVE"),
    Case("tenant IP deny", 403, "FORBIDDEN"),
    # The SSE stream and the gateway's endpoints belong to no registered service.
    Case("service IP deny", 403, "FORBIDDEN", doors=("http", "websocket")),
    Case("role or scope missing", 403, "FORBIDDEN"),
    Case("over the rate limit", 429, "RATE_LIMIT"),
    # The SSE stream only reads; a WebSocket carries the client's frames upstream (a write).
    Case(
        "read-only tenant writes",
        403,
        "TENANT_READ_ONLY",
        writes=True,
        doors=("http", "websocket", "endpoint"),
    ),
]
MATRIX = [pytest.param(case, door, id=f"{case.name}-{door}") for case in CASES for door in case.doors]


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return SigningKey("door-1", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture
def issuer(signing_key):
    server = FakeIssuer().start()
    server.key_sets["main"] = [signing_key.jwk()]
    yield server
    server.stop()


@pytest.fixture
def world(make_service, make_tenant, make_user, bearer, upstream, issuer, signing_key, gateway):
    """A service with HTTP and WebSocket, a tenant (unique per test: rate-limit keys live in
    Redis), credentials for each case; returns a function that builds a case's setup."""
    from registry.models import ApiKey, RatePolicy
    from tenancy.models import IdentityProvider

    slug = f"door-{uuid.uuid4().hex[:8]}"
    service = make_service(
        "door", targets=[upstream.url], auth_required=True, websocket_enabled=True, read_roles=["viewer"]
    )
    tenant = make_tenant(slug)
    IdentityProvider.objects.create(
        name="Door SSO", issuer=ISSUER, jwks_url=issuer.jwks_url(), audience=AUDIENCE,
        tenant_claim="org", role_mapping=ROLE_MAPPING,
    )  # fmt: skip

    def credentials(case: Case) -> dict[str, str]:
        if case.name == "no token":
            return {}
        if case.name == "bad token":
            return {"Authorization": "Bearer forged.token.value"}
        if case.name == "external identity-provider token":
            return {"Authorization": f"Bearer {signing_key.sign(claims(org=slug))}"}
        if case.name == "role or scope missing":  # a key with no role the service takes, no scope
            key = ApiKey(tenant=tenant, name="bare", scopes=[], role="")
            secret = key.assign_new_secret()
            key.save()
            return {"X-API-Key": secret}
        return bearer(make_user(f"owner@{slug}.example", tenant=tenant))

    def arrange(case: Case) -> dict[str, str]:
        if case.name == "lapsed tenant":
            tenant.subscription.status = "canceled"
            tenant.subscription.save()
        elif case.name == "tenant IP deny":
            tenant.ip_deny = ["127.0.0.0/8", "::1/128"]
            tenant.save()
        elif case.name == "service IP deny":
            service.ip_deny = ["127.0.0.0/8", "::1/128"]
            service.save()
        elif case.name == "role or scope missing":
            service.read_roles = service.write_roles = ["member"]
            service.save()
        elif case.name == "over the rate limit":
            RatePolicy.objects.create(name=f"{slug}-2", scope="tenant", limit=2, window_seconds=60)
        elif case.name == "read-only tenant writes":
            tenant.read_only, tenant.read_only_reason = True, "Invoice overdue."
            tenant.save()
        headers = credentials(case)
        gateway.sync()
        return headers

    return arrange


def knock(gateway, door: str, headers: dict[str, str], writes: bool) -> tuple[int, dict | None]:
    """(status, problem document or None) for one attempt through a door."""
    if door == "websocket":
        try:
            with connect(gateway.url.replace("http", "ws") + "/api/v1/door/ws", additional_headers=headers):
                return 101, None
        except InvalidStatus as refused:
            return refused.response.status_code, json.loads(refused.response.body)
    if door == "sse":
        with httpx.stream(
            "GET", gateway.url + "/api/v1/alerts/stream", headers=headers, timeout=5
        ) as response:
            return response.status_code, _problem(
                response.status_code, response.read() if response.is_error else b""
            )
    if door == "endpoint":
        url = gateway.url + "/api/v1/alerts"
        if writes:
            body = {"severity": "warning", "message": "from the door test"}
            response = httpx.post(url, json=body, headers=headers, timeout=5)
        else:
            response = httpx.get(url, headers=headers, timeout=5)
    else:
        response = httpx.request(
            "POST" if writes else "GET", gateway.url + "/api/v1/door/echo", headers=headers
        )
    return response.status_code, _problem(response.status_code, response.content)


def _problem(status: int, body: bytes) -> dict | None:
    return json.loads(body) if status >= 400 else None


@pytest.mark.parametrize(("case", "door"), MATRIX)
def test_every_door_gives_the_same_answer(world, gateway, upstream, case, door):
    from alerts.models import Alert

    headers = world(case)
    if case.code == "RATE_LIMIT":  # two admitted, the third refused
        for _ in range(2):
            assert knock(gateway, door, headers, case.writes)[0] == ADMITTED[door]
        upstream.clear()
    alerts_before = Alert.objects.count()

    status, problem = knock(gateway, door, headers, case.writes)

    if case.code is None:
        assert status == ADMITTED[door]
        assert problem is None
        return
    assert status == case.status, problem
    assert problem["code"] == case.code
    assert problem["status"] == case.status
    assert problem["type"].startswith("/problems/")
    assert upstream.hits() == [], "a refused request reached the upstream"
    assert Alert.objects.count() == alerts_before, "a refused write reached the alert log"


def test_a_websocket_refusal_carries_the_problem_document_and_request_id(world, gateway):
    headers = world(Case("lapsed tenant", 402, "SUBSCRIPTION_INACTIVE"))
    headers["X-Request-ID"] = "door-check-1"
    with pytest.raises(InvalidStatus) as refused:
        connect(gateway.url.replace("http", "ws") + "/api/v1/door/ws", additional_headers=headers)
    response = refused.value.response
    assert response.status_code == 402
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["X-Request-ID"] == "door-check-1"
    assert json.loads(response.body)["request_id"] == "door-check-1"


def test_an_upgrade_counts_against_the_service_rate_policy(world, gateway, upstream):
    """A policy of 2 per minute on the service: one HTTP call and one upgrade use it up."""
    from registry.models import RatePolicy, Service

    headers = world(Case("external identity-provider token", 200, None))
    RatePolicy.objects.create(
        name="door-service-2",
        scope="tenant",
        service=Service.objects.get(slug="door"),
        limit=2,
        window_seconds=60,
    )
    gateway.sync()

    assert knock(gateway, "http", headers, False)[0] == 200
    assert knock(gateway, "websocket", headers, False)[0] == 101
    assert knock(gateway, "websocket", headers, False)[0] == 429
    assert knock(gateway, "http", headers, False)[0] == 429
    assert knock(gateway, "sse", headers, False)[0] == 200  # another door's policy, not this service's


def test_the_upstream_handshake_carries_the_forwarded_header_set(world, gateway, upstream):
    headers = world(Case("external identity-provider token", 200, None))
    headers.update({"X-Request-ID": "ws-forward-1", "X-Tenant-ID": "spoofed", "X-User-ID": "spoofed"})
    with connect(gateway.url.replace("http", "ws") + "/api/v1/door/ws", additional_headers=headers):
        pass
    http_headers = {k: v for k, v in headers.items() if k != "X-Request-ID"}
    httpx.get(gateway.url + "/api/v1/door/echo", headers=http_headers)

    handshake, request = upstream.hits("/ws")[0].headers, upstream.hits("/echo")[0].headers
    assert handshake["x-request-id"] == "ws-forward-1"
    for name in (
        "x-tenant-id",
        "x-user-id",
        "x-user-roles",
        "x-user-scopes",
        "x-forwarded-for",
        "x-forwarded-proto",
    ):
        assert handshake[name] == request[name], name
    assert handshake["x-tenant-id"] != "spoofed" and handshake["x-user-id"] != "spoofed"
    assert "traceparent" in handshake
