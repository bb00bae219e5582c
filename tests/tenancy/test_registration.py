"""Registration (SPEC section 6) never tells a caller whether an address has an account: a new
and a registered address get the same 201, and the account only exists once the token e-mailed
to the address is confirmed with the registration's password."""

from __future__ import annotations

import itertools
import re

import jwt
import pytest
from django.core import mail
from rest_framework.test import APIClient

from tenancy.models import Tenant, User

_addresses = (f"10.8.{i // 250}.{i % 250 + 1}" for i in itertools.count())
PASSWORD = "a-long-password-1"
TOKEN_IN_MAIL = re.compile(r'"token": "([^"]+)"')


@pytest.fixture
def api():
    """A client with its own source address, so the register rate limit never leaks between tests."""
    return APIClient(REMOTE_ADDR=next(_addresses))


@pytest.fixture
def owner(db, tenant):
    return User.objects.create_user(
        "owner@acme.example", email="owner@acme.example", password="correct-horse-9", tenant=tenant
    )


def register(api, email: str, **extra):
    return api.post("/api/v1/auth/register", {"email": email, "password": PASSWORD, **extra}, format="json")


def confirm(api, token: str, password: str = PASSWORD):
    return api.post("/api/v1/auth/register/confirm", {"token": token, "password": password}, format="json")


def token_mailed_to(address: str) -> str:
    (message,) = [m for m in mail.outbox if m.to == [address]]
    return TOKEN_IN_MAIL.search(message.body).group(1)


def counts() -> tuple[int, int]:
    return User.objects.count(), Tenant.objects.count()


def test_a_new_and_a_registered_address_get_the_same_answer(api, owner):
    before = counts()

    new = register(api, "new@shop.example")
    existing = register(api, "OWNER@acme.example")

    assert new.status_code == existing.status_code == 201
    assert new.json() == existing.json()
    assert set(new.json()) == {"detail", "confirm_url"}
    assert "already" not in new.content.decode().lower()
    assert counts() == before  # nothing is written until the confirmation
    # The owner is told someone tried; the new address gets a token to confirm with.
    assert "already has one" in [m for m in mail.outbox if m.to == ["owner@acme.example"]][0].body
    assert TOKEN_IN_MAIL.search([m for m in mail.outbox if m.to == ["new@shop.example"]][0].body)
    assert not TOKEN_IN_MAIL.search([m for m in mail.outbox if m.to == ["owner@acme.example"]][0].body)


def test_confirming_creates_a_trialing_tenant_and_returns_tokens(api, db):
    register(api, "new@shop.example", tenant_name="New Shop")

    response = confirm(api, token_mailed_to("new@shop.example"))

    assert response.status_code == 201
    assert set(response.json()) == {"access", "refresh"}
    user = User.objects.get(email="new@shop.example")
    assert (user.tenant.slug, user.role) == ("new-shop", "member")
    assert user.tenant.subscription.status == "trialing"
    assert jwt.decode(response.json()["access"], options={"verify_signature": False})["tenant"] == "new-shop"
    login = api.post("/api/v1/auth/login", {"email": "new@shop.example", "password": PASSWORD}, format="json")
    assert login.status_code == 200


def test_a_token_needs_the_registration_password_and_works_once(api, db):
    register(api, "new@shop.example")
    token = token_mailed_to("new@shop.example")

    wrong = confirm(api, token, password="someone-elses-pass-9")
    forged = confirm(api, "not-a-token")
    right = confirm(api, token)
    again = confirm(api, token)

    assert wrong.status_code == forged.status_code == again.status_code == 401
    assert wrong.json()["code"] == forged.json()["code"] == again.json()["code"] == "AUTH_ERROR"
    assert wrong["Content-Type"] == "application/problem+json"
    assert right.status_code == 201
    assert User.objects.filter(email="new@shop.example").count() == 1


def test_colleagues_of_one_domain_each_get_a_tenant(api, db):
    for address in ("ana@bakery.example", "ben@bakery.example"):
        assert register(api, address).status_code == 201
        assert confirm(api, token_mailed_to(address)).status_code == 201

    names = sorted(User.objects.values_list("tenant__name", flat=True))
    assert names == ["bakery.example", "bakery.example-2"]


def test_weak_passwords_and_taken_tenant_names_are_400_for_every_address(api, owner):
    before = counts()
    for email in ("x@new.example", "owner@acme.example"):
        weak = api.post("/api/v1/auth/register", {"email": email, "password": "123"}, format="json")
        taken = register(api, email, tenant_name="acme bakery")
        assert weak.status_code == taken.status_code == 400
        assert "password" in weak.json()["errors"]
        assert "tenant_name" in taken.json()["errors"]
    assert counts() == before
    assert mail.outbox == []
