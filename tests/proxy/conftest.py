"""Fixtures for the data plane: a recording upstream, registered services, a live gateway."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.live import GatewayServer, RecordingUpstream


@pytest.fixture
def upstream():
    server = RecordingUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def second_upstream():
    server = RecordingUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def make_service(transactional_db):
    from registry.models import Service, Target

    def make(slug="sales", targets=(), **fields):
        fields.setdefault("path_prefix", f"/api/v1/{slug}")
        fields.setdefault("auth_required", False)
        service = Service.objects.create(name=slug.title(), slug=slug, **fields)
        for target in targets:
            if isinstance(target, str):
                target = {"url": target}
            Target.objects.create(service=service, **target)
        return service

    return make


@pytest.fixture
def gateway(transactional_db, settings):
    settings.RATE_LIMIT_DEFAULT = ""
    server = GatewayServer().start()
    yield server
    server.stop()


@pytest.fixture
def make_tenant(transactional_db):
    from tenancy.models import Subscription, Tenant

    def make(slug="acme", status="active", period_days=30, grace_days=7, **fields):
        tenant = Tenant.objects.create(name=slug.title(), slug=slug, **fields)
        Subscription.objects.create(
            tenant=tenant,
            status=status,
            grace_days=grace_days,
            current_period_end=timezone.now() + timedelta(days=period_days),
        )
        return tenant

    return make


@pytest.fixture
def make_user(transactional_db):
    from tenancy.models import User

    def make(username="owner@acme.example", tenant=None, role="member", **fields):
        return User.objects.create_user(
            username,
            email=username if "@" in username else "",
            password="pw-123456789",
            tenant=tenant,
            role=role,
            **fields,
        )

    return make


@pytest.fixture
def bearer():
    """Authorization headers carrying a real access token for a user."""
    from tenancy.tokens import tokens_for_user

    def make(user) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens_for_user(user)['access']}"}

    return make
