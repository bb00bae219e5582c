"""The circuit breaker's state machine (fake clock) and its effect on live traffic."""

import concurrent.futures
import time

import httpx
import pytest

from proxy.breaker import BreakerSettings, BreakerState, CircuitBreaker
from tests.live import free_port


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def make_breaker(clock, **overrides):
    return CircuitBreaker("svc/1", BreakerSettings(**overrides), clock=clock)


def fail(breaker, times):
    for _ in range(times):
        breaker.acquire()
        breaker.record_failure()


def test_opens_at_the_threshold_within_the_window(clock):
    breaker = make_breaker(clock)
    fail(breaker, 4)
    assert breaker.state == BreakerState.CLOSED
    fail(breaker, 1)
    assert breaker.state == BreakerState.OPEN
    assert not breaker.is_available()
    assert breaker.time_until_retry() == pytest.approx(30)


def test_minimum_throughput_prevents_opening_on_few_requests(clock):
    breaker = make_breaker(clock, failure_threshold=2, minimum_throughput=5)
    fail(breaker, 2)
    assert breaker.state == BreakerState.CLOSED
    breaker.record_success()
    breaker.record_success()
    fail(breaker, 1)
    assert breaker.state == BreakerState.OPEN


def test_failures_outside_the_window_do_not_count(clock):
    breaker = make_breaker(clock)
    fail(breaker, 4)
    clock.now += 121
    fail(breaker, 4)
    assert breaker.state == BreakerState.CLOSED
    assert breaker.failure_count == 4


def test_half_opens_after_recovery_and_closes_after_successes(clock):
    breaker = make_breaker(clock)
    fail(breaker, 5)
    clock.now += 29.9
    assert not breaker.is_available()
    clock.now += 0.2
    assert breaker.is_available()
    for expected in (BreakerState.HALF_OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED):
        breaker.acquire()
        assert breaker.state == BreakerState.HALF_OPEN
        breaker.record_success()
        assert breaker.state == expected


def test_half_open_failure_reopens(clock):
    breaker = make_breaker(clock)
    fail(breaker, 5)
    clock.now += 31
    breaker.acquire()
    breaker.record_success()
    breaker.acquire()
    breaker.record_failure()
    assert breaker.state == BreakerState.OPEN
    assert breaker.time_until_retry() == pytest.approx(30)


def test_only_one_half_open_trial_at_a_time(clock):
    breaker = make_breaker(clock)
    fail(breaker, 5)
    clock.now += 31
    assert breaker.is_available()
    breaker.acquire()
    assert not breaker.is_available()  # a second caller must wait for the trial's verdict
    breaker.record_success()
    assert breaker.is_available()


def test_describe_reports_state_failures_and_retry(clock):
    breaker = make_breaker(clock)
    fail(breaker, 5)
    clock.now += 10
    assert breaker.describe() == {"state": "open", "failure_count": 5, "time_until_retry": 20.0}


# --- live -------------------------------------------------------------------------------


def test_breaker_opens_fails_fast_half_opens_and_closes_live(gateway, make_service, upstream):
    port = free_port()
    service = make_service(
        "sales",
        targets=[f"http://127.0.0.1:{port}"],
        retries=0,
        breaker_failure_threshold=3,
        breaker_minimum_throughput=3,
        breaker_recovery_timeout=1,
        breaker_success_threshold=2,
    )
    gateway.sync()
    url = f"{gateway.url}/api/v1/sales/x"
    assert [httpx.get(url).status_code for _ in range(3)] == [502, 502, 502]
    response = httpx.get(url)
    assert response.status_code == 503
    assert response.json()["code"] == "CIRCUIT_OPEN"
    assert int(response.headers["retry-after"]) >= 1
    # The upstream comes back on the same port; after the recovery timeout, trials close it.
    target = service.targets.get()
    target.url = upstream.url
    target.save()
    gateway.sync()
    breaker = gateway.runtime.breakers.find(target.pk)
    assert breaker.state == BreakerState.OPEN
    time.sleep(1.1)
    assert httpx.get(url).status_code == 200
    assert breaker.state == BreakerState.HALF_OPEN
    assert httpx.get(url).status_code == 200
    assert breaker.state == BreakerState.CLOSED


def test_one_half_open_trial_under_concurrency_live(gateway, make_service, upstream):
    service = make_service(
        "sales",
        targets=[upstream.url],
        retries=0,
        breaker_failure_threshold=3,
        breaker_minimum_throughput=3,
        breaker_recovery_timeout=0.5,
    )
    gateway.sync()
    url = f"{gateway.url}/api/v1/sales"
    for _ in range(3):
        assert httpx.get(f"{url}/status/500").status_code == 500
    assert httpx.get(f"{url}/x").json()["code"] == "CIRCUIT_OPEN"
    time.sleep(0.6)
    upstream.clear()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: httpx.get(f"{url}/slow?delay=0.5", timeout=5), range(8)))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1  # exactly one trial went through
    assert statuses.count(503) == 7
    assert len(upstream.hits("/slow")) == 1
    assert gateway.runtime.breakers.find(service.targets.get().pk).state == BreakerState.HALF_OPEN


def test_staff_reset_closes_the_breaker(gateway, make_service, upstream):
    from django.utils import timezone

    service = make_service(
        "sales",
        targets=[upstream.url],
        retries=0,
        breaker_failure_threshold=2,
        breaker_minimum_throughput=2,
        breaker_recovery_timeout=300,
    )
    gateway.sync()
    for _ in range(2):
        httpx.get(f"{gateway.url}/api/v1/sales/status/503")
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 503
    target = service.targets.get()
    target.breaker_reset_at = timezone.now()
    target.save()
    gateway.sync()
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200


def test_panic_mode_forwards_when_every_target_is_unhealthy(gateway, make_service, upstream):
    make_service("sales", targets=[{"url": upstream.url, "healthy": False}])
    gateway.sync()
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200


def test_unhealthy_targets_get_no_traffic_while_a_healthy_one_exists(
    gateway, make_service, upstream, second_upstream
):
    make_service(
        "sales",
        targets=[{"url": upstream.url, "healthy": False}, {"url": second_upstream.url}],
    )
    gateway.sync()
    for _ in range(10):
        assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200
    assert upstream.hits() == []
    assert len(second_upstream.hits()) == 10
