"""Registry objects the admin and management API tests both start from."""

from __future__ import annotations

import pytest

from registry.models import ApiKey, Service, Target


@pytest.fixture
def service(db):
    return Service.objects.create(name="Sales", slug="sales", path_prefix="/api/v1/sales")


@pytest.fixture
def target(service):
    return Target.objects.create(service=service, url="http://127.0.0.1:9001")


@pytest.fixture
def api_key(tenant):
    key = ApiKey(tenant=tenant, name="ci-robot", scopes=["read"])
    key.assign_new_secret()
    key.save()
    return key
