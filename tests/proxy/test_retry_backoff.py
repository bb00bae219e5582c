"""The pause before a retry is drawn once: the pause checked against the deadline is the one slept.

With two draws, a small first value let a retry through the deadline check and a large second
one then held the client past connect_timeout + read_timeout.
"""

import time

import httpx

from proxy import forward

CONNECT_TIMEOUT = 0.2
READ_TIMEOUT = 0.5
DEADLINE = CONNECT_TIMEOUT + READ_TIMEOUT


class ScriptedJitter:
    """Stands in for `random` in proxy.forward: each draw takes the next fraction of its range."""

    def __init__(self, *fractions: float) -> None:
        self.fractions = list(fractions)
        self.draws: list[float] = []

    def uniform(self, low: float, high: float) -> float:
        value = low + (high - low) * self.fractions[len(self.draws) % len(self.fractions)]
        self.draws.append(value)
        return value


def one_retry_on_a_503(gateway, make_service, upstream, monkeypatch, *fractions: float) -> ScriptedJitter:
    """A retryable 503 upstream, one retry, a 1 s backoff base and scripted jitter draws."""
    jitter = ScriptedJitter(*fractions)
    monkeypatch.setattr(forward, "random", jitter)
    monkeypatch.setattr(forward, "_BACKOFF_BASE", 1.0)
    make_service(
        "sales",
        targets=[upstream.url],
        retries=1,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )
    gateway.sync()
    return jitter


def test_a_retry_sleeps_the_pause_it_checked_against_the_deadline(
    gateway, make_service, upstream, monkeypatch
):
    # Given: draws alternating between nothing and a full second, longer than the deadline.
    jitter = one_retry_on_a_503(gateway, make_service, upstream, monkeypatch, 0.0, 1.0)

    # When: a GET meets the 503.
    started = time.monotonic()
    response = httpx.get(f"{gateway.url}/api/v1/sales/status/503", timeout=10)
    elapsed = time.monotonic() - started

    # Then: one draw (no pause), one retry, the upstream's answer passed through in time.
    assert jitter.draws == [0.0]
    assert len(upstream.hits("/status/503")) == 2
    assert response.status_code == 503
    assert elapsed < DEADLINE


def test_no_retry_when_the_drawn_pause_would_cross_the_deadline(gateway, make_service, upstream, monkeypatch):
    jitter = one_retry_on_a_503(gateway, make_service, upstream, monkeypatch, 1.0, 0.0)

    started = time.monotonic()
    response = httpx.get(f"{gateway.url}/api/v1/sales/status/503", timeout=10)

    assert jitter.draws == [1.0]
    assert len(upstream.hits("/status/503")) == 1
    assert response.status_code == 502 and response.json()["code"] == "BAD_GATEWAY"
    assert time.monotonic() - started < DEADLINE
