"""Authentication, authorization and tenant checks in the data plane, with real tokens."""

import base64
import io
import json
import socket
import time
import uuid
from datetime import timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.utils import timezone

from tenancy.keys import key_ring
from tests.live import wait_until


def claims(**overrides):
    now = int(time.time())
    base = {
        "sub": "7",
        "tenant": "acme",
        "roles": ["member"],
        "scopes": ["read", "write"],
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
        "token_type": "access",
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload, **header):
    ring = key_ring()
    return jwt.encode(
        payload, ring.signing_key, algorithm="RS256", headers={"kid": ring.signing_kid, **header}
    )


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged_tokens():
    ring = key_ring()
    public_pem = ring.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    hs_with_public = b64({"alg": "HS256", "typ": "JWT", "kid": ring.signing_kid}) + "." + b64(claims())
    import hashlib
    import hmac

    signature = hmac.new(public_pem, hs_with_public.encode(), hashlib.sha256).digest()
    hs_with_public += "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    jwk_header = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(other_key.public_key()))
    return {
        "alg-none": b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims()) + ".",
        "hs256-with-public-key": hs_with_public,
        "missing-exp": sign(claims(exp=None)),
        "expired": sign(claims(exp=now - 60, iat=now - 400)),
        "future-nbf": sign(claims(nbf=now + 600)),
        "wrong-aud": sign(claims(aud="someone-else")),
        "wrong-iss": sign(claims(iss="https://evil.example")),
        "unknown-kid": sign(claims(), kid="not-a-key"),
        "kid-path-trick": sign(claims(), kid="../../../../dev/null"),
        "embedded-jwk": jwt.encode(
            claims(), other_key, algorithm="RS256", headers={"jwk": jwk_header, "kid": "x"}
        ),
        "other-key-same-kid": jwt.encode(
            claims(), other_key, algorithm="RS256", headers={"kid": ring.signing_kid}
        ),
        "refresh-token-as-access": sign(claims(token_type="refresh")),
        "garbage": "not.a.token",
        "json-not-jwt": "e30",
    }


@pytest.fixture
def protected(make_service, make_tenant, upstream, gateway):
    make_tenant("acme")
    make_service(
        "sales",
        targets=[upstream.url],
        auth_required=True,
        read_roles=["viewer"],
        write_roles=["member"],
    )
    gateway.sync()
    return gateway


def test_valid_rs256_token_passes_with_identity_headers(protected, upstream):
    response = httpx.get(
        f"{protected.url}/api/v1/sales/echo", headers={"Authorization": f"Bearer {sign(claims())}"}
    )
    assert response.status_code == 200
    received = upstream.hits("/echo")[0].headers
    assert received["x-user-id"] == "7"
    assert received["x-tenant-id"] == "acme"
    assert received["x-user-roles"] == "member"
    assert received["x-user-scopes"] == "read write"
    assert "x-demo-mode" not in received


@pytest.mark.parametrize("case", list(forged_tokens()))
def test_every_bad_token_gets_the_same_401_and_nothing_is_forwarded(protected, upstream, case):
    token = forged_tokens()[case]
    response = httpx.get(f"{protected.url}/api/v1/sales/x", headers={"Authorization": f"Bearer {token}"})
    anonymous = httpx.get(f"{protected.url}/api/v1/sales/x")
    assert response.status_code == anonymous.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="gateway"'
    body, reference = response.json(), anonymous.json()
    body.pop("request_id"), reference.pop("request_id")
    assert body == reference
    assert body["code"] == "AUTH_ERROR"
    assert upstream.hits() == []


def test_two_authorization_headers_are_refused(protected, upstream):
    token = sign(claims())
    with socket.create_connection(("127.0.0.1", protected.port), timeout=5) as sock:
        sock.sendall(
            f"GET /api/v1/sales/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n"
            f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode()
        )
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 400")
    assert upstream.hits() == []


def test_api_key_authenticates_and_revocation_applies(protected, upstream, transactional_db):
    from registry.models import ApiKey
    from tenancy.models import Tenant

    key = ApiKey(tenant=Tenant.objects.get(slug="acme"), name="ci", role="member", scopes=["read"])
    secret = key.assign_new_secret()
    key.save()
    protected.sync()
    response = httpx.get(f"{protected.url}/api/v1/sales/echo", headers={"X-API-Key": secret})
    assert response.status_code == 200
    received = upstream.hits("/echo")[0].headers
    assert received["x-tenant-id"] == "acme"
    assert "x-api-key" not in received  # the secret is not passed on
    assert (
        httpx.get(f"{protected.url}/api/v1/sales/x", headers={"X-API-Key": secret + "x"}).status_code == 401
    )
    key.revoke()
    key.save()
    protected.sync()
    assert httpx.get(f"{protected.url}/api/v1/sales/x", headers={"X-API-Key": secret}).status_code == 401


def test_expired_api_key_is_refused(protected, transactional_db):
    from registry.models import ApiKey
    from tenancy.models import Tenant

    key = ApiKey(
        tenant=Tenant.objects.get(slug="acme"),
        name="old",
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    secret = key.assign_new_secret()
    key.save()
    protected.sync()
    assert httpx.get(f"{protected.url}/api/v1/sales/x", headers={"X-API-Key": secret}).status_code == 401


def test_roles_gate_reads_and_writes(protected, upstream):
    viewer = {"Authorization": f"Bearer {sign(claims(roles=['viewer'], scopes=['read']))}"}
    member = {"Authorization": f"Bearer {sign(claims())}"}
    assert httpx.get(f"{protected.url}/api/v1/sales/x", headers=viewer).status_code == 200
    response = httpx.post(f"{protected.url}/api/v1/sales/x", headers=viewer, content=b"{}")
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"
    assert httpx.post(f"{protected.url}/api/v1/sales/x", headers=member, content=b"{}").status_code == 200
    assert [r.method for r in upstream.hits("/x")] == ["GET", "POST"]


def test_required_scopes_are_enforced(make_service, make_tenant, upstream, gateway):
    make_tenant("acme")
    make_service("reports", targets=[upstream.url], auth_required=True, write_scopes=["admin"])
    gateway.sync()
    member = {"Authorization": f"Bearer {sign(claims())}"}
    admin = {"Authorization": f"Bearer {sign(claims(scopes=['read', 'write', 'admin']))}"}
    assert httpx.delete(f"{gateway.url}/api/v1/reports/x", headers=member).status_code == 403
    assert httpx.delete(f"{gateway.url}/api/v1/reports/x", headers=admin).status_code == 200


def test_public_paths_need_no_token(make_service, upstream, gateway):
    make_service("sales", targets=[upstream.url], auth_required=True, public_paths=["/public"])
    gateway.sync()
    assert httpx.get(f"{gateway.url}/api/v1/sales/public/catalog").status_code == 200
    assert httpx.get(f"{gateway.url}/api/v1/sales/publicity").status_code == 401
    assert httpx.get(f"{gateway.url}/api/v1/sales/private").status_code == 401


def test_read_only_tenant_can_read_but_not_write(protected, upstream, transactional_db):
    from tenancy.models import Tenant

    tenant = Tenant.objects.get(slug="acme")
    tenant.read_only = True
    tenant.read_only_reason = "Invoice 2024-117 is overdue"
    tenant.save()
    protected.sync()
    headers = {"Authorization": f"Bearer {sign(claims())}"}
    assert httpx.get(f"{protected.url}/api/v1/sales/x", headers=headers).status_code == 200
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = httpx.request(method, f"{protected.url}/api/v1/sales/x", headers=headers, content=b"{}")
        assert response.status_code == 403
        assert response.json()["code"] == "TENANT_READ_ONLY"
        assert response.json()["detail"] == "Invoice 2024-117 is overdue"
    assert [r.method for r in upstream.hits()] == ["GET"]
    tenant.read_only = False
    tenant.save()
    wait_until(
        lambda: httpx.post(f"{protected.url}/api/v1/sales/x", headers=headers).status_code == 200,
        1.0,
        interval=0.02,
        message="read-only to be lifted",
    )


def test_lapsed_subscription_is_402_and_past_due_within_grace_passes(
    make_service, make_tenant, upstream, gateway
):
    make_tenant("lapsed", status="canceled", period_days=-30)
    make_tenant("late", status="past_due", period_days=-2, grace_days=7)
    make_tenant("gone", status="past_due", period_days=-10, grace_days=7)
    make_service("sales", targets=[upstream.url], auth_required=True)
    gateway.sync()
    for tenant, expected in (("lapsed", 402), ("late", 200), ("gone", 402)):
        headers = {"Authorization": f"Bearer {sign(claims(tenant=tenant))}"}
        response = httpx.get(f"{gateway.url}/api/v1/sales/x", headers=headers)
        assert response.status_code == expected, tenant
        if expected == 402:
            assert response.json()["code"] == "SUBSCRIPTION_INACTIVE"


def test_the_demo_lapsed_bakery_is_402_and_the_active_one_is_forwarded(upstream, gateway):
    from django.core.management import call_command

    from fixtures.demo_data import DEMO_PASSWORD
    from registry.models import Target

    # Given: the demo data of `make run`, its sales targets pointed at the test upstream.
    call_command("load_demo", stdout=io.StringIO())
    Target.objects.filter(service__slug="sales").update(url=upstream.url)
    gateway.sync()
    statuses = {}
    for owner in ("owner@bakery-lapsed.example", "owner@bakery-madrid.example"):
        login = httpx.post(
            f"{gateway.url}/api/v1/auth/login", json={"email": owner, "password": DEMO_PASSWORD}
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access']}"}
        # When: each owner reads through the gateway.
        response = httpx.get(f"{gateway.url}/api/v1/sales/echo", headers=headers)
        statuses[owner] = (response.status_code, response.json().get("code"))
    # Then: the canceled tenant past its grace is refused; nothing of it reached the upstream.
    assert statuses["owner@bakery-lapsed.example"] == (402, "SUBSCRIPTION_INACTIVE")
    assert statuses["owner@bakery-madrid.example"][0] == 200
    assert [hit.headers["x-tenant-id"] for hit in upstream.hits("/echo")] == ["bakery-madrid"]


def test_demo_token_goes_to_demo_targets_with_demo_headers(
    make_service, make_tenant, upstream, second_upstream, gateway, client
):
    make_tenant("bakery-demo", is_demo=True)
    make_tenant("acme")
    make_service(
        "sales",
        auth_required=True,
        targets=[{"url": upstream.url}, {"url": second_upstream.url, "demo_only": True}],
    )
    gateway.sync()
    demo = httpx.post(f"{gateway.url}/api/v1/auth/demo").json()
    headers = {"Authorization": f"Bearer {demo['access']}"}
    for _ in range(4):
        assert httpx.get(f"{gateway.url}/api/v1/sales/echo", headers=headers).status_code == 200
    assert upstream.hits() == []
    received = second_upstream.hits("/echo")
    assert len(received) == 4
    assert received[0].headers["x-demo-mode"] == "true"
    assert received[0].headers["x-demo-session"] == demo["demo_session"]
    assert received[0].headers["x-tenant-id"] == "bakery-demo"
    regular = {"Authorization": f"Bearer {sign(claims())}"}
    for _ in range(4):
        httpx.get(f"{gateway.url}/api/v1/sales/echo", headers=regular)
    assert len(upstream.hits()) == 4
    assert len(second_upstream.hits()) == 4


def test_logout_revokes_the_access_token_here(make_service, make_tenant, make_user, upstream, gateway):
    tenant = make_tenant("acme")
    make_user("owner@acme.example", tenant=tenant)
    make_service("sales", targets=[upstream.url], auth_required=True)
    gateway.sync()
    tokens = httpx.post(
        f"{gateway.url}/api/v1/auth/login",
        json={"email": "owner@acme.example", "password": "pw-123456789"},
    ).json()
    headers = {"Authorization": f"Bearer {tokens['access']}"}
    assert httpx.get(f"{gateway.url}/api/v1/sales/x", headers=headers).status_code == 200
    logout = httpx.post(
        f"{gateway.url}/api/v1/auth/logout", headers=headers, json={"refresh": tokens["refresh"]}
    )
    assert logout.status_code == 204
    assert httpx.get(f"{gateway.url}/api/v1/sales/x", headers=headers).status_code == 401
    refreshed = httpx.post(f"{gateway.url}/api/v1/auth/refresh", json={"refresh": tokens["refresh"]})
    assert refreshed.status_code == 401


@pytest.mark.redis
def test_logout_on_one_instance_rejects_the_token_on_another(
    redis_url, make_service, make_tenant, make_user, upstream, transactional_db
):
    from tests.live import GatewayProcess

    tenant = make_tenant("acme")
    make_user("owner@acme.example", tenant=tenant)
    make_service("sales", targets=[upstream.url], auth_required=True)
    first, second = GatewayProcess().start(), GatewayProcess().start()
    try:
        tokens = httpx.post(
            f"{first.url}/api/v1/auth/login",
            json={"email": "owner@acme.example", "password": "pw-123456789"},
        ).json()
        headers = {"Authorization": f"Bearer {tokens['access']}"}
        assert httpx.get(f"{second.url}/api/v1/sales/x", headers=headers).status_code == 200
        assert httpx.post(f"{first.url}/api/v1/auth/logout", headers=headers).status_code == 204
        wait_until(
            lambda: httpx.get(f"{second.url}/api/v1/sales/x", headers=headers).status_code == 401,
            1.0,
            interval=0.02,
            message="the other instance to refuse the logged-out token",
        )
    finally:
        first.stop()
        second.stop()


def test_api_key_last_use_is_recorded_in_batches(protected, transactional_db):
    from registry.models import ApiKey
    from tenancy.models import Tenant

    key = ApiKey(tenant=Tenant.objects.get(slug="acme"), name="ci", role="member")
    secret = key.assign_new_secret()
    key.save()
    protected.sync()
    for _ in range(5):
        assert httpx.get(f"{protected.url}/api/v1/sales/x", headers={"X-API-Key": secret}).status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is None  # nothing written per request
    protected.call(protected.runtime.watcher._flush_api_key_usage())  # the periodic flush
    key.refresh_from_db()
    assert key.last_used_at is not None
    assert (timezone.now() - key.last_used_at).total_seconds() < 10
