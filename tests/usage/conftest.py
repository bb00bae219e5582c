"""Usage tests reuse the data plane's fixtures (a recording upstream, services, tenants, a live gateway)."""

from tests.proxy.conftest import bearer, gateway, make_service, make_tenant, make_user, upstream  # noqa: F401
