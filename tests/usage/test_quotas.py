"""Plan quotas: exact across instances, in the limiter's one round trip, alerts at 80 % and 100 %."""

from __future__ import annotations

import concurrent.futures
import time
from datetime import UTC, datetime

import httpx
import pytest

from proxy.metering import flush_once
from tests.live import GatewayProcess


@pytest.fixture
def make_plan(transactional_db):
    from tenancy.models import Plan, ServiceQuota

    def make(name="starter", monthly=None, per_service=(), policies=()):
        plan = Plan.objects.create(name=name, monthly_request_quota=monthly)
        for service, quota in per_service:
            ServiceQuota.objects.create(plan=plan, service=service, monthly_request_quota=quota)
        plan.rate_policies.set(policies)
        return plan

    return make


@pytest.fixture
def subscriber(make_tenant, make_user, bearer):
    """A member of a tenant subscribed to `plan`, and the Authorization header they send."""

    def make(plan, slug="quota-bakery"):
        tenant = make_tenant(slug)
        tenant.subscription.plan = plan
        tenant.subscription.save()
        return bearer(make_user(f"owner@{slug}.example", tenant=tenant))

    return make


@pytest.fixture(params=["in-process", "redis"])
def backend(request, settings):
    if request.param == "redis":
        request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    return request.param


def _seconds_to_next_month() -> float:
    now = datetime.now(UTC)
    following = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return (following - now).total_seconds()


@pytest.mark.redis
@pytest.mark.slow
def test_a_quota_of_fifty_over_two_instances_and_sixteen_connections_admits_fifty(
    redis_url, settings, make_service, make_plan, subscriber, upstream
):
    # Given a plan with a monthly quota of 50 and two gateway processes sharing Redis
    settings.RATE_LIMIT_DEFAULT = ""
    make_service("sales", targets=[upstream.url], auth_required=True)
    headers = subscriber(make_plan(monthly=50))
    instances = [GatewayProcess().start(), GatewayProcess().start()]
    try:
        # When 16 connections send 200 requests between them, alternating instances
        def connection(index: int) -> list[httpx.Response]:
            base = instances[index % 2].url
            with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
                return [
                    client.get(f"/api/v1/sales/n/{index}-{i}") for i in range(200 // 16 + (index < 200 % 16))
                ]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            responses = [r for batch in pool.map(connection, range(16)) for r in batch]
    finally:
        for instance in instances:
            instance.stop()

    # Then exactly 50 were admitted and forwarded, and every refusal names the quota
    assert len(responses) == 200
    assert [r.status_code for r in responses].count(200) == 50
    assert len(upstream.hits()) == 50
    refused = [r for r in responses if r.status_code == 429]
    assert len(refused) == 150
    sample = refused[0]
    assert sample.headers["content-type"] == "application/problem+json"
    assert sample.json()["code"] == "QUOTA_EXCEEDED" and sample.json()["violated_policies"] == ["quota"]
    assert abs(int(sample.headers["retry-after"]) - _seconds_to_next_month()) < 60
    assert '"quota";q=50;w=' in sample.headers["ratelimit-policy"]
    assert '"quota";r=0;' in sample.headers["ratelimit"]


def test_quota_headers_count_down_and_the_refusal_forwards_nothing(
    backend, gateway, make_service, make_plan, subscriber, upstream
):
    make_service("sales", targets=[upstream.url], auth_required=True)
    headers = subscriber(make_plan(monthly=3))
    gateway.sync()
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as client:
        responses = [client.get("/api/v1/sales/x") for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in responses[:3]] == ["2", "1", "0"]
    assert responses[3].json()["code"] == "QUOTA_EXCEEDED"
    assert len(upstream.hits()) == 3


def test_a_service_quota_limits_that_service_only(
    backend, gateway, make_service, make_plan, subscriber, upstream
):
    make_service("sales", targets=[upstream.url], auth_required=True)
    stock = make_service("stock", targets=[upstream.url], auth_required=True)
    headers = subscriber(make_plan(per_service=[(stock, 2)]))
    gateway.sync()
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as client:
        stock_statuses = [client.get("/api/v1/stock/x").status_code for _ in range(3)]
        sales_statuses = [client.get("/api/v1/sales/x").status_code for _ in range(3)]
        refused = client.get("/api/v1/stock/x")
    assert stock_statuses == [200, 200, 429]
    assert sales_statuses == [200, 200, 200]
    assert refused.json()["violated_policies"] == ["quota-stock"]
    assert '"quota-stock";q=2;' in refused.headers["ratelimit-policy"]


def test_a_plans_default_rate_policy_applies_to_its_tenants_only(
    gateway, make_service, make_plan, subscriber, upstream, settings
):
    from registry.models import RatePolicy

    settings.REDIS_URL = ""
    make_service("sales", targets=[upstream.url], auth_required=True)
    tight = RatePolicy.objects.create(name="starter-minute", scope="tenant", limit=2, window_seconds=60)
    starter = subscriber(make_plan("starter", policies=[tight]), slug="on-starter")
    pro = subscriber(make_plan("pro"), slug="on-pro")
    gateway.sync()
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        starter_statuses = [client.get("/api/v1/sales/x", headers=starter).status_code for _ in range(3)]
        pro_statuses = [client.get("/api/v1/sales/x", headers=pro).status_code for _ in range(3)]
    assert starter_statuses == [200, 200, 429]
    assert pro_statuses == [200, 200, 200]


@pytest.mark.redis
def test_the_quota_adds_no_redis_round_trip(
    redis_url, gateway, make_service, make_plan, subscriber, upstream
):
    from registry.models import RatePolicy

    # Given a per-minute policy, and a tenant whose plan also has a monthly quota
    make_service("sales", targets=[upstream.url], auth_required=True)
    RatePolicy.objects.create(name="tenant-minute", scope="tenant", limit=1000, window_seconds=60)
    headers = subscriber(make_plan(monthly=1000))
    gateway.sync()
    pipe = gateway.runtime.redis_pipe
    calls = []
    real_evalsha = pipe.evalsha

    def counting_evalsha(*args):
        calls.append(args[2])
        return real_evalsha(*args)

    pipe.evalsha = counting_evalsha
    # When ten requests go through
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as client:
        statuses = [client.get("/api/v1/sales/x").status_code for _ in range(10)]
    # Then each made one script call carrying both the policy and the quota
    assert statuses == [200] * 10
    assert len(calls) == 10
    assert all(len(keys) == 2 and any(":quota:" in key for key in keys) for keys in calls)


def test_alerts_at_eighty_and_a_hundred_percent_once_each(
    backend, gateway, make_service, make_plan, subscriber, upstream
):
    from alerts.models import Alert
    from usage.rollup import roll_up

    make_service("sales", targets=[upstream.url], auth_required=True)
    headers = subscriber(make_plan(monthly=5), slug="alerted")
    gateway.sync()
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as client:
        statuses = [client.get("/api/v1/sales/x").status_code for _ in range(8)]
    assert statuses == [200] * 5 + [429] * 3
    gateway.call(flush_once(gateway.runtime))
    roll_up()
    roll_up()  # a second run adds nothing
    alerts = list(Alert.objects.filter(tenant__slug="alerted").order_by("pk"))
    period = f"{datetime.now(UTC):%Y-%m}"
    assert [(a.severity, a.message) for a in alerts] == [
        ("warning", f"Monthly request quota at 80 %: 4 of 5 requests in {period}."),
        ("error", f"Monthly request quota used up: 5 of 5 requests in {period}."),
    ]
    assert all(a.event_id for a in alerts)  # published into the durable SSE log


def test_month_boundaries():
    from proxy.quotas import month_of

    december = month_of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC).timestamp())
    assert december.label == "2026-12"
    assert december.resets_at == int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    assert month_of(december.resets_at).label == "2027-01"
    assert time.time() < month_of(time.time()).resets_at
