"""Metering: what the data plane counts reaches the usage hours once, whatever goes wrong."""

from __future__ import annotations

import json

import httpx
import pytest

from proxy.metering import Meter, UsageBatch, batch_hash_key, flush_once, local_batches


@pytest.fixture(params=["in-process", "redis"])
def store_backend(request, settings):
    """Run with the in-process batch store and again with Redis."""
    if request.param == "redis":
        request.getfixturevalue("redis_url")
        return request.param
    settings.REDIS_URL = ""
    return request.param


def _send_traffic(gateway, headers: dict[str, str]) -> list[httpx.Response]:
    """23 OK requests (some with bodies), 4 upstream 404s, 2 upstream 503s."""
    responses = []
    with httpx.Client(base_url=gateway.url, timeout=10, headers=headers) as client:
        for index in range(23):
            if index % 3:
                responses.append(client.get(f"/api/v1/sales/items/{index}"))
            else:
                responses.append(client.post("/api/v1/sales/orders", content=b"x" * (100 + index)))
        responses += [client.get("/api/v1/sales/status/404") for _ in range(4)]
        responses += [client.get("/api/v1/sales/status/503") for _ in range(2)]
    return responses


def test_usage_rolled_up_equals_the_traffic_sent(
    store_backend, gateway, make_service, make_tenant, make_user, bearer, upstream, settings
):
    from usage.models import UsageHour
    from usage.rollup import roll_up

    # Given a service, a tenant and a member, and nothing pending in the store
    make_service("sales", targets=[upstream.url], retries=0, auth_required=True)
    tenant = make_tenant("metered")
    member = make_user("owner@metered.example", tenant=tenant)
    gateway.sync()
    roll_up()
    UsageHour.objects.all().delete()

    # When the member sends traffic and the instance flushes, then the roll-up runs
    responses = _send_traffic(gateway, bearer(member))
    gateway.call(flush_once(gateway.runtime))
    assert roll_up() >= 1

    # Then one hour row holds exactly what was sent and answered
    row = UsageHour.objects.get(tenant_slug="metered", service_slug="sales")
    assert [r.status_code for r in responses].count(200) == 23
    assert row.requests == 29
    assert row.status_4xx == 4
    assert row.status_5xx == 2
    assert row.bytes_in == sum(100 + i for i in range(0, 23, 3))
    assert row.bytes_out == sum(len(r.content) for r in responses)
    assert sum(row.latency_histogram) == 29


def test_a_second_roll_up_counts_nothing_twice(transactional_db):
    from usage.models import UsageHour
    from usage.rollup import roll_up

    batch = _batch("twice", requests=5)
    local_batches.put(batch)
    assert roll_up(local_batches) == 1
    local_batches.put(batch)  # the same batch found again (e.g. a discard that never happened)
    assert roll_up(local_batches) == 0
    assert UsageHour.objects.get(tenant_slug="twice").requests == 5


def test_a_crash_mid_roll_up_leaves_nothing_half_written(transactional_db, monkeypatch):
    import usage.rollup
    from usage.models import AppliedBatch, UsageHour
    from usage.rollup import roll_up

    # Given a batch touching two services, and a roll-up that dies after the first
    batch = _batch("crashy", requests=3, services=("sales", "stock"))
    local_batches.put(batch)
    real_add = usage.rollup._add_to_hour
    calls = []

    def add_then_crash(*args):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        real_add(*args)

    monkeypatch.setattr(usage.rollup, "_add_to_hour", add_then_crash)
    with pytest.raises(RuntimeError):
        roll_up(local_batches)

    # Then nothing was written and the batch is still pending
    assert not UsageHour.objects.filter(tenant_slug="crashy").exists()
    assert not AppliedBatch.objects.filter(batch_id=batch.id).exists()
    assert batch.id in local_batches.pending()

    # When the next roll-up runs, each service is counted once
    monkeypatch.setattr(usage.rollup, "_add_to_hour", real_add)
    assert roll_up(local_batches) == 1
    counts = dict(UsageHour.objects.filter(tenant_slug="crashy").values_list("service_slug", "requests"))
    assert counts == {"sales": 3, "stock": 3}


@pytest.mark.redis
def test_a_crash_after_commit_before_discard_is_not_counted_again(redis_url, transactional_db, settings):
    from gateway_project.core.broadcast import sync_redis
    from usage.models import UsageHour
    from usage.rollup import apply_batch, roll_up
    from usage.store import batch_store

    batch = _batch("committed", requests=4)
    client = sync_redis()
    client.hset(batch_hash_key(settings.CACHE_KEY_PREFIX), batch.id, batch.to_json())
    assert apply_batch(batch)  # committed; the worker dies before removing it from Redis
    assert batch.id in batch_store().pending()
    assert roll_up() == 0
    assert batch.id not in batch_store().pending()
    assert UsageHour.objects.get(tenant_slug="committed").requests == 4


def test_a_failed_flush_keeps_its_counts_for_the_next_one(settings):
    settings.CACHE_KEY_PREFIX = "wtusage-flushfail"

    class BrokenRedis:
        async def hset(self, *args):
            raise ConnectionError("redis restarting")

    class Recorder:
        def __init__(self):
            self.saved = {}

        async def hset(self, key, field, value):
            self.saved[field] = value

    class Runtime:
        meter = Meter("test-instance")
        redis = BrokenRedis()

    import asyncio

    Runtime.meter.record("acme", "sales", 200, 10, 20, 0.003)
    assert asyncio.run(flush_once(Runtime)) is None
    Runtime.meter.record("acme", "sales", 500, 1, 2, 0.003)
    Runtime.redis = Recorder()
    flushed = asyncio.run(flush_once(Runtime))
    assert flushed is not None
    saved = UsageBatch.from_json(Runtime.redis.saved[flushed.id])
    [(key, values)] = saved.buckets.items()
    assert key[:2] == ("acme", "sales")
    assert values[:5] == [2, 0, 1, 11, 22]


def _batch(tenant: str, requests: int, services=("sales",)) -> UsageBatch:
    meter = Meter(f"test-{tenant}")
    for service in services:
        for _ in range(requests):
            meter.record(tenant, service, 200, 1, 2, 0.002)
    batch = meter.take()
    assert json.loads(batch.to_json())["id"] == batch.id
    return batch


def test_without_redis_the_gateway_rolls_up_its_own_usage(
    transactional_db, settings, make_service, make_tenant, make_user, bearer, upstream
):
    from tests.live import GatewayServer, wait_until
    from usage.models import UsageHour

    # Given a gateway with no Redis, flushing and rolling up every 0.2 s
    settings.REDIS_URL = ""
    settings.RATE_LIMIT_DEFAULT = ""
    settings.USAGE_FLUSH_SECONDS = settings.USAGE_ROLLUP_SECONDS = 0.2
    make_service("sales", targets=[upstream.url], auth_required=True)
    member = make_user("owner@local.example", tenant=make_tenant("local"))
    with GatewayServer() as gateway:
        gateway.sync()
        # When a member sends 7 requests
        with httpx.Client(base_url=gateway.url, headers=bearer(member), timeout=10) as client:
            assert {client.get("/api/v1/sales/x").status_code for _ in range(7)} == {200}
        # Then the usage hour shows them, with no Celery worker and no Redis involved
        row = wait_until(
            lambda: UsageHour.objects.filter(tenant_slug="local", requests=7).first(),
            timeout=10, message="the in-process roll-up",
        )  # fmt: skip
    assert row.service_slug == "sales" and row.status_4xx == row.status_5xx == 0


def test_an_unreadable_batch_is_dropped_without_blocking_the_others(transactional_db):
    from usage.models import UsageHour
    from usage.rollup import roll_up

    good = _batch("after-garbage", requests=2)
    local_batches._batches["garbage"] = '{"id": "garbage", "buckets": [["t"]]}'
    local_batches.put(good)
    assert roll_up(local_batches) == 1
    assert local_batches.pending() == []
    assert UsageHour.objects.get(tenant_slug="after-garbage").requests == 2
