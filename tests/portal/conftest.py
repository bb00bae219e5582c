"""Two bakeries with a member and a viewer each, some usage and a key apiece."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.proxy.conftest import bearer, gateway, make_service, upstream  # noqa: F401

PASSWORD = "bakery-pass-123"


@pytest.fixture
def bakeries(transactional_db):
    from registry.models import ApiKey
    from tenancy.models import Plan, Subscription, Tenant, User

    plan = Plan.objects.create(name="starter", monthly_request_quota=1000)
    made = {}
    for slug in ("bakery-madrid", "bakery-sevilla"):
        tenant = Tenant.objects.create(name=slug.replace("-", " ").title(), slug=slug)
        Subscription.objects.create(
            tenant=tenant, plan=plan, current_period_end=timezone.now() + timedelta(days=30)
        )
        member = User.objects.create_user(
            f"owner@{slug}.example", f"owner@{slug}.example", PASSWORD, tenant=tenant
        )
        viewer = User.objects.create_user(
            f"viewer@{slug}.example", f"viewer@{slug}.example", PASSWORD, tenant=tenant, role="viewer"
        )
        key = ApiKey(tenant=tenant, name=f"{slug} till", scopes=["read"])
        key.assign_new_secret()
        key.save()
        made[slug] = {"tenant": tenant, "member": member, "viewer": viewer, "key": key}
    return made


@pytest.fixture
def signed_in():
    """A browser-like client (CSRF enforced) signed in through the portal's login form."""

    def sign_in(user, code: str = "") -> Client:
        client = Client(enforce_csrf_checks=True)
        client.get("/portal/login/")
        response = client.post(
            "/portal/login/",
            {"username": user.username, "password": PASSWORD, "otp_token": code,
             "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
        )  # fmt: skip
        assert response.status_code == 302, response.content.decode()[:500]
        return client

    return sign_in


def post(client: Client, url: str, data: dict | None = None):
    """A form POST carrying the CSRF token, as the portal's pages send it."""
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def this_hour() -> datetime:
    return timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
