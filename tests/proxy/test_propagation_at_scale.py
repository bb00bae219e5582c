"""SPEC section 23 at a test's size (the bench runs the full one): with 2,000 services, 500
tenants and 10,000 API keys, each change a staff member makes reaches a second instance
within 1 s, as a delta that leaves the untouched tables shared."""

from __future__ import annotations

import time

import httpx
import pytest

from bench.scale import Changes
from bench.scale_registry import ScaleSize, grow_registry
from tests.live import GatewayServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SIZE = ScaleSize(services=2_000, tenants=500, api_keys=10_000)
PROPAGATION_SECONDS = 1.0  # SPEC 3 and 23
STARTUP_SECONDS = 90  # two full compiles of this registry on a shared 2-core machine


@pytest.fixture
def instances(transactional_db, settings, redis_url, upstream):
    """Two gateway instances over one registry of SIZE, sharing PostgreSQL and Redis."""
    settings.RATE_LIMIT_DEFAULT = ""
    grow_registry(SIZE, upstream.url)
    servers = [GatewayServer(), GatewayServer()]
    try:
        for server in servers:
            server.start(timeout=STARTUP_SECONDS)
        yield servers
    finally:
        for server in servers:
            server.stop()


def updates(kind: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("gateway_config_updates_total", {"kind": kind}) or 0.0


def seconds_until(server: GatewayServer, request, expected: int, started: float) -> float:
    """From `started` (before the save) until `server` answers `expected`; fails past 1 s."""
    method, path, headers = request
    with httpx.Client(base_url=server.url, timeout=5) as client:
        while (status := client.request(method, path, headers=headers).status_code) != expected:
            assert time.perf_counter() - started < PROPAGATION_SECONDS, f"still {status}"
            time.sleep(0.005)
    return time.perf_counter() - started


def test_each_change_reaches_a_second_instance_within_a_second(instances, upstream):
    first, second = instances
    changes = Changes(SIZE, upstream.url)
    before = second.runtime.snapshot
    assert len(before.api_keys) == SIZE.api_keys and len(before.services_by_prefix) == SIZE.services
    full_rebuilds = updates("full")

    for name, change, expected in (
        ("read-only toggle", changes.read_only_toggle, 403),
        ("new API key", changes.new_api_key, 200),
        ("deleted API key", changes.deleted_api_key, 401),
        ("new service", changes.new_service, 200),
    ):
        started = time.perf_counter()
        request, status = change(1)
        assert status == expected
        assert seconds_until(second, request, expected, started) < PROPAGATION_SECONDS, name
        assert seconds_until(first, request, expected, started) < PROPAGATION_SECONDS, name

    # Then: the instances applied deltas only (the counter is the process's: both instances),
    # the tenants' table patched, not rebuilt (only tenant 1's entry is new), the keys shared.
    assert updates("full") == full_rebuilds
    after = second.runtime.snapshot
    assert after.version > before.version
    assert after.tenants is not before.tenants
    assert sum(after.tenants[slug] is not entry for slug, entry in before.tenants.items()) == 1
    assert sum(after.api_keys.get(h) is not entry for h, entry in before.api_keys.items()) == 0
    assert upstream.hits("/items"), "the requests reached the upstream"
