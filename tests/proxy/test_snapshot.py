"""The data plane's snapshot: compiled from the registry, swapped on change, zero queries per request."""

import threading
import time

import httpx
import pytest
from django.db.backends import utils as db_utils

from tests.live import GatewayProcess


def wait_for_status(url: str, status: int, timeout: float = 5.0, **kwargs) -> float:
    """Seconds until `url` answers `status` (polling every 10 ms); fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(url, timeout=1, **kwargs).status_code == status:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    pytest.fail(f"{url} did not answer {status} within {timeout}s")


def test_a_service_saved_through_the_orm_is_routable_within_a_second(gateway, make_service, upstream):
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 404
    started = time.monotonic()
    make_service("sales", targets=[upstream.url])
    wait_for_status(f"{gateway.url}/api/v1/sales/x", 200, timeout=1.0)
    assert time.monotonic() - started < 1.0


def test_a_deleted_service_stops_routing(gateway, make_service, upstream):
    service = make_service("sales", targets=[upstream.url])
    wait_for_status(f"{gateway.url}/api/v1/sales/x", 200)
    service.delete()
    wait_for_status(f"{gateway.url}/api/v1/sales/x", 404, timeout=1.0)


@pytest.fixture
def query_log(monkeypatch):
    """Every SQL statement executed in this process, with the thread that ran it."""
    log: list[tuple[str, str]] = []
    original = db_utils.CursorWrapper._execute

    def counting(self, sql, params, *ignored):
        log.append((threading.current_thread().name, sql))
        return original(self, sql, params, *ignored)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", counting)
    return log


def test_zero_database_queries_per_proxied_request(
    gateway, make_service, make_tenant, make_user, bearer, upstream, query_log, settings
):
    from registry.models import ApiKey, RatePolicy

    tenant = make_tenant("acme")
    service = make_service("sales", targets=[upstream.url], auth_required=True, read_roles=["viewer"])
    RatePolicy.objects.create(name="per-user", scope="user", limit=10_000, window_seconds=60)
    key = ApiKey(tenant=tenant, name="ci", role="member")
    secret = key.assign_new_secret()
    key.save()
    headers = bearer(make_user(tenant=tenant))
    gateway.sync()
    with httpx.Client() as client:  # warm-up: token cache, pools
        assert client.get(f"{gateway.url}/api/v1/sales/x", headers=headers).status_code == 200
        query_log.clear()
        started = time.monotonic()
        for index in range(200):
            auth = headers if index % 2 else {"X-API-Key": secret}
            assert client.get(f"{gateway.url}/api/v1/sales/x", headers=auth).status_code == 200
        elapsed = time.monotonic() - started
    request_thread = f"gateway-{gateway.port}"
    assert [sql for thread, sql in query_log if thread == request_thread] == []
    # The only queries are the control plane's periodic version check, never one per request.
    polls = elapsed / settings.CONFIG_POLL_SECONDS + 2
    assert len(query_log) <= polls, query_log[:5]
    assert service.pk


def test_the_last_snapshot_keeps_serving_when_the_database_fails(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    runtime = gateway.runtime

    def broken():
        raise RuntimeError("database unreachable")

    import proxy.snapshot

    original = proxy.snapshot.compile_snapshot
    proxy.snapshot.compile_snapshot = broken
    try:
        gateway.call(runtime.watcher.refresh(force=True))
        assert runtime.control_plane_ok is False
        assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200
    finally:
        proxy.snapshot.compile_snapshot = original
    gateway.call(runtime.watcher.refresh(force=True))
    assert runtime.control_plane_ok is True


@pytest.mark.redis
def test_config_change_reaches_another_instance_within_a_second(
    redis_url, transactional_db, make_service, upstream
):
    from registry.models import Target

    service = make_service("inventory", targets=[upstream.url])
    first, second = GatewayProcess().start(), GatewayProcess().start()
    try:
        wait_for_status(f"{second.url}/api/v1/inventory/x", 200)
        started = time.monotonic()
        sales = make_service("sales")
        Target.objects.create(service=sales, url=upstream.url)
        elapsed = wait_for_status(f"{second.url}/api/v1/sales/x", 200, timeout=2.0)
        assert time.monotonic() - started < 1.0, elapsed
        wait_for_status(f"{first.url}/api/v1/sales/x", 200, timeout=1.0)
        service.enabled = False
        service.save()
        wait_for_status(f"{second.url}/api/v1/inventory/x", 503, timeout=1.0)
    finally:
        first.stop()
        second.stop()
