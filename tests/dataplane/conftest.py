"""Data planes without a database: the demo registry as the file they serve (shared fixtures)."""

from __future__ import annotations

import pytest

from tests.declarative.conftest import demo, demo_file  # noqa: F401  (the same demo registry)
from tests.proxy.conftest import second_upstream, upstream  # noqa: F401  (real loopback upstreams)


@pytest.fixture
def demo_key(demo) -> str:  # noqa: F811
    """An API key of bakery-madrid (role member); the secret, which only its hash reaches a file."""
    from registry.models import ApiKey
    from tenancy.models import Tenant

    key = ApiKey(tenant=Tenant.objects.get(slug="bakery-madrid"), name="edge", role="member", scopes=["read"])
    secret = key.assign_new_secret()
    key.save()
    return secret
