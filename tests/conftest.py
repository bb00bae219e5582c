"""Fixtures shared by the whole suite: real Redis, a real browser, users of each kind."""

from __future__ import annotations

import os
import shutil
import sys
import time

import pytest

IN_CI = bool(os.environ.get("CI"))
CHROMIUM = "/usr/bin/chromium"
QUIET_DATABASE_SECONDS = 5
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require(condition: bool, reason: str) -> None:
    """Skip locally when a real dependency is missing; in CI a missing dependency is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI requires it: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache and no leftover gateway keys in Redis (rate-limit
    windows, traffic, alert logs, revocations). Only this run's key prefix is deleted,
    never the whole database.
    """
    from django.conf import settings
    from django.core.cache import cache

    def clear():
        if hasattr(cache, "delete_pattern"):
            cache.delete_pattern("*")
        else:
            cache.clear()
        if settings.REDIS_URL:
            from gateway_project.core.broadcast import sync_redis

            client = sync_redis()
            keys = list(client.scan_iter(f"{settings.CACHE_KEY_PREFIX}:*", count=1000))
            if keys:
                client.delete(*keys)

    clear()
    yield
    clear()


@pytest.fixture(autouse=True)
def _database_quiet_before_flush(request):
    """Before a transactional test's tables are truncated, wait (bounded) until no other
    session is mid-query on the test database: a gateway thread or process of the test that
    was just stopped may still be finishing a snapshot read, and PostgreSQL would answer the
    TRUNCATE with a deadlock that spoils the next test's data.
    """
    if "transactional_db" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("transactional_db")  # so this teardown runs before the flush
    yield
    stop_leftover_gateways(request)
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + QUIET_DATABASE_SECONDS
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state IS NOT NULL AND state <> 'idle'"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)


def stop_leftover_gateways(request) -> None:
    """Stop in-thread gateways a test left running (a fixture whose stop timed out, a start
    that gave up): their runtimes would keep reading the shared test database and counting
    the process-wide metrics of the tests that follow."""
    from tests.live import GatewayServer

    for server in list(GatewayServer.running):
        sys.stderr.write(f"\n{request.node.nodeid} left gateway {server.url} running; stopping it\n")
        server.stop()


@pytest.fixture(autouse=True)
def _no_gateway_left_running(request):
    yield
    stop_leftover_gateways(request)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    require(bool(url), "REDIS_URL is not set")
    return url


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:  # pragma: no cover - environment problem
        require(False, f"Redis at {redis_url} is unreachable: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def browser(django_db_setup, django_db_blocker):
    """A real headless Chromium (Debian's), driven by Playwright.

    Playwright's sync API keeps an event loop running in the main thread, which makes
    Django refuse ORM calls there (SynchronousOnlyOperation); the ORM calls in these tests
    are ordinary synchronous ones, so that guard is lifted while the browser lives. Module
    scope: the loop is gone again before the next module's asyncio tests run.
    """
    require(os.path.exists(CHROMIUM) or bool(shutil.which("chromium")), "chromium is not installed")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield instance
            instance.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def artifacts_dir() -> str:
    path = os.path.join(os.path.dirname(__file__), "..", "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture
def tenant(db):
    from datetime import timedelta

    from django.utils import timezone

    from tenancy.models import Subscription, Tenant

    tenant = Tenant.objects.create(name="Acme Bakery", slug="acme")
    Subscription.objects.create(tenant=tenant, current_period_end=timezone.now() + timedelta(days=30))
    return tenant


@pytest.fixture
def staff_user(db):
    from tenancy.models import User

    return User.objects.create_user(
        "staffer",
        email="staffer@example.com",
        password="staff-pass-123",
        is_staff=True,
        is_superuser=True,
        role="admin",
    )


@pytest.fixture
def member_user(db, tenant):
    from tenancy.models import User

    return User.objects.create_user(
        "member",
        email="member@acme.example",
        password="member-pass-123",
        tenant=tenant,
        role="member",
    )


@pytest.fixture
def staff_client(staff_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(staff_user)
    return client


@pytest.fixture
def member_client(member_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(member_user)
    return client
