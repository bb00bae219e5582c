"""The auth endpoints: login, register, refresh rotation, logout, OAuth2 form, demo, me, JWKS."""

import itertools

import jwt
import pytest
from rest_framework.test import APIClient

from tenancy.keys import key_ring

_addresses = (f"10.9.{i // 250}.{i % 250 + 1}" for i in itertools.count())


@pytest.fixture
def api():
    """A client with its own source address, so login rate limits never leak between tests."""
    return APIClient(REMOTE_ADDR=next(_addresses))


@pytest.fixture
def owner(db, tenant):
    from tenancy.models import User

    return User.objects.create_user(
        "owner@acme.example", email="owner@acme.example", password="correct-horse-9", tenant=tenant
    )


def decode(token):
    return jwt.decode(token, options={"verify_signature": False})


def test_login_by_email_or_username_returns_simplejwt_pair(api, owner):
    for body in ({"email": "owner@acme.example"}, {"username": "OWNER@acme.example"}):
        response = api.post("/api/v1/auth/login", {**body, "password": "correct-horse-9"}, format="json")
        assert response.status_code == 200
        assert set(response.json()) == {"access", "refresh"}
    claims = decode(response.json()["access"])
    assert claims["sub"] == str(owner.pk)
    assert claims["tenant"] == "acme"
    assert claims["roles"] == ["member"]
    assert claims["scopes"] == ["read", "write"]
    assert claims["iss"] == "gateway" and claims["aud"] == "gateway-api"
    assert jwt.get_unverified_header(response.json()["access"])["alg"] == "RS256"


def test_bad_credentials_are_401_problem(api, owner):
    for body in (
        {"email": "owner@acme.example", "password": "wrong"},
        {"email": "nobody@x.example", "password": "x"},
    ):
        response = api.post("/api/v1/auth/login", body, format="json")
        assert response.status_code == 401
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["code"] == "AUTH_ERROR"


def test_login_without_a_name_is_400_with_field_errors(api):
    response = api.post("/api/v1/auth/login", {"password": "x"}, format="json")
    assert response.status_code == 400
    assert "username" in response.json()["errors"]


def test_sixth_login_in_a_minute_from_one_ip_is_429_even_with_varying_usernames(api, owner):
    statuses = [
        api.post(
            "/api/v1/auth/login", {"email": f"user{i}@x.example", "password": "x"}, format="json"
        ).status_code
        for i in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    response = api.post(
        "/api/v1/auth/login",
        {"email": "owner@acme.example", "password": "correct-horse-9"},
        format="json",
    )
    assert response.status_code == 429
    assert response.json()["code"] == "RATE_LIMIT"
    assert response["Retry-After"] == "60"


def test_one_username_is_limited_across_ips(owner):
    statuses = []
    for _ in range(6):
        client = APIClient(REMOTE_ADDR=next(_addresses))
        statuses.append(
            client.post(
                "/api/v1/auth/login",
                {"email": "owner@acme.example", "password": "nope"},
                format="json",
            ).status_code
        )
    assert statuses == [401] * 5 + [429]


def test_refresh_rotates_and_blacklists_the_old_token(api, owner):
    pair = api.post(
        "/api/v1/auth/login",
        {"email": "owner@acme.example", "password": "correct-horse-9"},
        format="json",
    ).json()
    rotated = api.post("/api/v1/auth/refresh", {"refresh": pair["refresh"]}, format="json")
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != pair["refresh"]
    assert decode(rotated.json()["access"])["tenant"] == "acme"
    reused = api.post("/api/v1/auth/refresh", {"refresh": pair["refresh"]}, format="json")
    assert reused.status_code == 401
    assert reused.json()["code"] == "AUTH_ERROR"
    garbage = api.post("/api/v1/auth/refresh", {"refresh": "garbage"}, format="json")
    assert garbage.status_code == 401


def test_logout_blacklists_refresh_and_revokes_access(api, owner):
    pair = api.post(
        "/api/v1/auth/login",
        {"email": "owner@acme.example", "password": "correct-horse-9"},
        format="json",
    ).json()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {pair['access']}"}
    assert api.get("/api/v1/users/me", **auth).status_code == 200
    assert (
        api.post("/api/v1/auth/logout", {"refresh": pair["refresh"]}, format="json", **auth).status_code
        == 204
    )
    assert api.get("/api/v1/users/me", **auth).status_code == 401
    assert api.post("/api/v1/auth/refresh", {"refresh": pair["refresh"]}, format="json").status_code == 401


def test_oauth2_password_form_for_swagger(api, owner):
    response = api.post(
        "/api/v1/auth/token",
        {"grant_type": "password", "username": "owner@acme.example", "password": "correct-horse-9"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    assert decode(body["access_token"])["sub"] == str(owner.pk)
    bad = api.post(
        "/api/v1/auth/token",
        {"grant_type": "password", "username": "owner@acme.example", "password": "x"},
    )
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_grant"


def test_demo_session_token(api, db):
    from tenancy.models import DemoSession, Tenant

    Tenant.objects.create(name="Bakery Demo", slug="bakery-demo", is_demo=True)
    response = api.post("/api/v1/auth/demo")
    assert response.status_code == 201
    claims = decode(response.json()["access"])
    assert claims["tenant"] == "bakery-demo"
    assert claims["demo_session"] == response.json()["demo_session"]
    assert claims["exp"] - claims["iat"] <= 30 * 60
    assert DemoSession.objects.filter(key=claims["demo_session"], tenant__slug="bakery-demo").exists()


def test_users_me(api, owner):
    assert api.get("/api/v1/users/me").status_code == 401
    anonymous = api.get("/api/v1/users/me")
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    pair = api.post(
        "/api/v1/auth/login",
        {"email": "owner@acme.example", "password": "correct-horse-9"},
        format="json",
    ).json()
    me = api.get("/api/v1/users/me", HTTP_AUTHORIZATION=f"Bearer {pair['access']}").json()
    assert me["email"] == "owner@acme.example"
    assert me["role"] == "member"
    assert me["tenant"]["slug"] == "acme"


def test_jwks_verifies_issued_tokens(api, owner):
    jwks = api.get("/.well-known/jwks.json").json()
    token = api.post(
        "/api/v1/auth/login",
        {"email": "owner@acme.example", "password": "correct-horse-9"},
        format="json",
    ).json()["access"]
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(key for key in jwks["keys"] if key["kid"] == kid)
    assert "d" not in jwk  # public only
    public_key = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
    claims = jwt.decode(token, public_key, algorithms=["RS256"], audience="gateway-api", issuer="gateway")
    assert claims["sub"] == str(owner.pk)
    assert kid == key_ring().signing_kid
