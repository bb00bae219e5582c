"""SIGTERM to one of two gateway instances with a request in flight and an SSE stream open
(issue: reliability): the request completes, the stream ends at once, the client resumes on
the other instance with Last-Event-ID and loses nothing, and the process exits in time.
"""

from __future__ import annotations

import concurrent.futures
import signal
import time

import httpx
import pytest

from tests.alerts.conftest import SseReader, publish
from tests.live import wait_until

STREAM = "/api/v1/alerts/stream"
GRACEFUL_TIMEOUT_SECONDS = 3  # what GatewayProcess passes to --graceful-timeout
# uvicorn re-raises the signal once it has shut down, so a clean exit reports -SIGTERM.
CLEAN_EXIT = (0, -signal.SIGTERM)
STREAM_END_SECONDS = 3


class EndingSseReader(SseReader):
    """An SseReader that also records how and when its stream ended."""

    ended: str | None = None
    finished_at: float | None = None

    def _run(self, url, headers):
        try:
            self._read(url, headers)
            self.ended = "complete"
        except httpx.HTTPError as exc:
            self.ended = repr(exc)
        finally:
            self.finished_at = time.monotonic()
            self._ready.set()

    def wait_ended(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


@pytest.fixture
def two_instances(redis_url, gateway_processes, make_service, upstream, tenant_user):
    """Instances A and B sharing the test database and Redis; a slow-capable service; a tenant."""
    make_service("reports", targets=[upstream.url], read_timeout=10)
    _, _, token = tenant_user("acme")
    return gateway_processes(), gateway_processes(), token


@pytest.mark.redis
def test_sigterm_completes_in_flight_requests_and_sse_clients_resume_elsewhere(two_instances, upstream):
    first, second, token = two_instances
    auth = {"Authorization": f"Bearer {token}"}
    # Given: an SSE client on A that has seen one alert (published on B), and a slow request on A.
    reader = EndingSseReader(f"{first.url}{STREAM}", auth)
    seen = publish(second.url, token, "before shutdown")["event_id"]
    assert reader.next()["id"] == seen
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(httpx.get, f"{first.url}/api/v1/reports/slow?delay=2", timeout=10)
        wait_until(lambda: upstream.hits("/slow"), 5, message="the slow request to reach the upstream")

        # When: A is told to stop, and alerts keep coming (published on B).
        signalled = time.monotonic()
        first.process.send_signal(signal.SIGTERM)
        published = [publish(second.url, token, "while A drains")["event_id"]]

        # Then: A's stream ends promptly, well before the in-flight request is done.
        assert reader.wait_ended(STREAM_END_SECONDS), "the SSE stream outlived SIGTERM"
        assert reader.finished_at - signalled < STREAM_END_SECONDS
        published += [publish(second.url, token, f"after A closed {i}")["event_id"] for i in range(2)]

        # And: the in-flight request completes normally.
        response = in_flight.result(10)
    assert response.status_code == 200
    assert response.json() == {"slept": True}
    # And: A exits cleanly within its graceful timeout.
    assert first.process.wait(GRACEFUL_TIMEOUT_SECONDS + 2) in CLEAN_EXIT
    assert time.monotonic() - signalled < GRACEFUL_TIMEOUT_SECONDS + 2

    # When: the client reconnects to B with the last id it saw.
    on_first = [e["id"] for e in reader.drain(0.1)]
    last_seen = on_first[-1] if on_first else seen
    resumed = SseReader(f"{second.url}{STREAM}", {**auth, "Last-Event-ID": last_seen})

    # Then: every alert arrives exactly once, in order, across the two connections.
    replayed = [e["id"] for e in resumed.drain(1.0)]
    assert on_first + replayed == published
    live = publish(second.url, token, "after the reconnect")["event_id"]
    assert resumed.next()["id"] == live
    assert resumed.drain(0.5) == []
    resumed.close()


@pytest.mark.redis
def test_sigterm_ends_sse_streams_with_a_complete_response(two_instances):
    first, _, token = two_instances
    reader = EndingSseReader(f"{first.url}{STREAM}", {"Authorization": f"Bearer {token}"})
    first.process.send_signal(signal.SIGTERM)
    assert reader.wait_ended(STREAM_END_SECONDS)
    assert first.process.wait(GRACEFUL_TIMEOUT_SECONDS + 2) in CLEAN_EXIT
    assert reader.ended == "complete"
