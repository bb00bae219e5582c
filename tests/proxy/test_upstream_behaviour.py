"""Streaming, timeouts, connection failures, retries and load balancing against real sockets."""

import hashlib
import json
import os
import socket
import time
from collections import Counter

import httpx

from tests.live import free_port


def test_large_request_body_is_streamed_to_the_upstream(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    payload = os.urandom(8 * 1024 * 1024 + 3)

    def chunks():
        for start in range(0, len(payload), 256 * 1024):
            yield payload[start : start + 256 * 1024]

    response = httpx.post(f"{gateway.url}/api/v1/sales/upload", content=chunks(), timeout=30)
    assert response.status_code == 200
    assert response.json() == {
        "received_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def test_request_body_reaches_the_upstream_before_the_client_has_sent_it_all(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    half = os.urandom(4 * 1024 * 1024)
    seen_while_sending = []

    def chunks():
        yield half
        # The second half waits until the upstream has bytes: a buffering proxy would wait
        # for all of them first, and the upstream would see nothing within 5 s.
        seen_while_sending.append(upstream.upload_started.wait(5))
        yield half

    response = httpx.post(f"{gateway.url}/api/v1/sales/upload", content=chunks(), timeout=30)
    assert response.status_code == 200
    assert response.json()["received_bytes"] == 2 * len(half)
    assert seen_while_sending == [True]


def test_response_body_reaches_the_client_before_the_upstream_has_sent_it_all(
    gateway, make_service, upstream
):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    size = 4 * 1024 * 1024
    started = time.monotonic()
    received = 0
    first_bytes_after = None
    with httpx.stream("GET", f"{gateway.url}/api/v1/sales/bytes?n={size}&hold=1", timeout=30) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            if first_bytes_after is None:
                first_bytes_after = time.monotonic() - started
                upstream.release_response.set()  # only now does the upstream send the rest
            received += len(chunk)
    assert received == size
    # The upstream holds the rest for 5 s unless released: the first chunk came before that.
    assert first_bytes_after < 2, first_bytes_after
    assert time.monotonic() - started < 4


def test_large_response_body_is_streamed_to_the_client(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    size = 20 * 1024 * 1024
    received = 0
    chunks = 0
    with httpx.stream("GET", f"{gateway.url}/api/v1/sales/bytes?n={size}", timeout=30) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += len(chunk)
            chunks += 1
    assert received == size
    assert chunks > 10  # arrived in pieces, not as one buffered blob


def test_sse_passes_through_event_by_event(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    arrivals = []
    with httpx.stream("GET", f"{gateway.url}/api/v1/sales/sse?count=4&interval=0.3", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.time(), json.loads(line[6:])))
    assert [event["n"] for _, event in arrivals] == [0, 1, 2, 3]
    # Each event reached the client soon after the upstream wrote it, not at the end.
    for arrived, event in arrivals:
        assert arrived - event["t"] < 0.25
    assert arrivals[-1][0] - arrivals[0][0] > 0.8


def test_body_over_the_service_limit_is_413_declared(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url], max_body_bytes=1000)
    gateway.sync()
    response = httpx.post(f"{gateway.url}/api/v1/sales/upload", content=b"x" * 1001)
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert upstream.hits() == []


def test_chunked_body_over_the_limit_is_413_while_streaming(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url], max_body_bytes=100_000)
    gateway.sync()

    def chunks():
        for _ in range(50):
            yield b"y" * 10_000

    response = httpx.post(f"{gateway.url}/api/v1/sales/upload", content=chunks(), timeout=10)
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"


def test_refused_connection_is_502(gateway, make_service):
    make_service("sales", targets=[f"http://127.0.0.1:{free_port()}"], retries=0)
    gateway.sync()
    started = time.monotonic()
    response = httpx.get(f"{gateway.url}/api/v1/sales/x")
    assert response.status_code == 502
    assert response.json()["code"] == "BAD_GATEWAY"
    assert time.monotonic() - started < 2


def test_slow_upstream_is_504_at_the_read_timeout(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url], read_timeout=0.5, retries=2)
    gateway.sync()
    started = time.monotonic()
    response = httpx.get(f"{gateway.url}/api/v1/sales/slow?delay=3", timeout=10)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["code"] == "UPSTREAM_TIMEOUT"
    assert 0.4 < elapsed < 1.5
    assert len(upstream.hits("/slow")) == 1  # a timeout is not retried


def test_idempotent_requests_retry_on_503_and_non_idempotent_do_not(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url], retries=2)
    gateway.sync()
    assert httpx.get(f"{gateway.url}/api/v1/sales/status/503").status_code == 503
    assert len(upstream.hits("/status/503")) == 3  # 1 + 2 retries, last answer passed through
    upstream.clear()
    assert httpx.post(f"{gateway.url}/api/v1/sales/status/503").status_code == 503
    assert len(upstream.hits("/status/503")) == 1
    upstream.clear()
    assert httpx.get(f"{gateway.url}/api/v1/sales/status/500").status_code == 500
    assert len(upstream.hits("/status/500")) == 1  # 500 is not a retry status


def test_connect_failure_retries_on_another_target(gateway, make_service, upstream):
    dead = f"http://127.0.0.1:{free_port()}"
    make_service("sales", targets=[dead, upstream.url], retries=2)
    gateway.sync()
    statuses = Counter(httpx.get(f"{gateway.url}/api/v1/sales/x").status_code for _ in range(10))
    assert statuses == {200: 10}
    assert len(upstream.hits("/x")) == 10


def test_post_is_not_retried_after_connect_failure(gateway, make_service):
    make_service("sales", targets=[f"http://127.0.0.1:{free_port()}"], retries=3)
    gateway.sync()
    assert httpx.post(f"{gateway.url}/api/v1/sales/x", content=b"{}").status_code == 502


def test_weighted_round_robin_distribution(gateway, make_service, upstream, second_upstream):
    make_service(
        "sales",
        targets=[{"url": upstream.url, "weight": 300}, {"url": second_upstream.url, "weight": 100}],
    )
    gateway.sync()
    with httpx.Client() as client:
        for _ in range(1000):
            assert client.get(f"{gateway.url}/api/v1/sales/x").status_code == 200
    first, second = len(upstream.hits()), len(second_upstream.hits())
    assert first + second == 1000
    assert abs(first / 1000 - 0.75) <= 0.05
    assert abs(second / 1000 - 0.25) <= 0.05


def test_least_outstanding_prefers_the_idle_target(gateway, make_service, upstream, second_upstream):
    import concurrent.futures

    make_service(
        "sales",
        load_balancing="least_outstanding",
        targets=[upstream.url, second_upstream.url],
    )
    gateway.sync()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        slow = pool.submit(httpx.get, f"{gateway.url}/api/v1/sales/slow?delay=1.5", timeout=10)
        time.sleep(0.3)
        slow_port = (upstream.hits("/slow") or second_upstream.hits("/slow"))[0].port
        fast = [httpx.get(f"{gateway.url}/api/v1/sales/x").status_code for _ in range(6)]
        assert slow.result().status_code == 200
    assert fast == [200] * 6
    other = second_upstream if slow_port == upstream.port else upstream
    assert len(other.hits("/x")) == 6


def test_upstream_reset_mid_response_cuts_the_client_connection(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(b"GET /api/v1/sales/reset HTTP/1.1\r\nHost: gw\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert len(data.partition(b"\r\n\r\n")[2]) < 1_000_000  # truncated, not padded or hung
    assert time.monotonic() - started < 3


def test_upstream_reset_before_a_small_body_completes_is_502(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    response = httpx.get(f"{gateway.url}/api/v1/sales/reset?length=5000", timeout=5)
    assert response.status_code == 502
    assert response.json()["code"] == "BAD_GATEWAY"
