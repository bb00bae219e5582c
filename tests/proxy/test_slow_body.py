"""Slow request bodies (SPEC section 14): a client that announces a body and stops sending it
gets a 408 problem after REQUEST_BODY_TIMEOUT, its upstream request is aborted and its
connection closed, while everyone else is served as usual.
"""

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.live import wait_until

BODY_TIMEOUT = 2.0
SLOW_CLIENTS = 20
GRACE = 2.0  # the contract: a 408 within REQUEST_BODY_TIMEOUT + 2 s


@pytest.fixture
def sales(make_service, upstream, gateway, settings):
    settings.REQUEST_BODY_TIMEOUT = BODY_TIMEOUT
    make_service("sales", targets=[upstream.url], max_body_bytes=8 * 1024 * 1024)
    gateway.sync()
    return gateway


def _open_slow_body(port: int, head: bytes, first_bytes: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT + GRACE + 3)
    sock.sendall(head + first_bytes)
    return sock


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the gateway sends until it closes the connection, and when it closed it."""
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic()


def _problem(response: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def _assert_request_timeout(response: bytes) -> None:
    status, headers, problem = _problem(response)
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert problem["code"] == "REQUEST_TIMEOUT"
    assert problem["type"] == "/problems/request-timeout"
    assert problem["status"] == 408
    assert problem["request_id"] == headers["x-request-id"]
    assert "x-process-time" in headers  # answered by the data plane, not the server's backstop


def test_twenty_slow_bodies_get_408_while_a_normal_request_is_served_at_once(sales, upstream):
    # Given 20 clients that announce 100 bytes and send one
    head = (
        b"POST /api/v1/sales/slow-body HTTP/1.1\r\nHost: gateway\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    started = time.monotonic()
    sockets = [_open_slow_body(sales.port, head, b"{") for _ in range(SLOW_CLIENTS)]

    # When a normal request arrives while they hang
    time.sleep(0.3)
    before = time.monotonic()
    normal = httpx.post(f"{sales.url}/api/v1/sales/normal", json={"ok": True}, timeout=5)
    normal_elapsed = time.monotonic() - before

    # Then it is served at once, and every slow client gets its 408 and a closed connection in time
    assert normal.status_code == 200
    assert normal.json()["body"] == '{"ok":true}'
    assert normal_elapsed < 0.5
    with ThreadPoolExecutor(SLOW_CLIENTS) as pool:
        outcomes = list(pool.map(_read_until_closed, sockets))
    for response, closed_at in outcomes:
        _assert_request_timeout(response)
        assert BODY_TIMEOUT - 0.1 <= closed_at - started <= BODY_TIMEOUT + GRACE
    assert upstream.hits("/slow-body") == []


@pytest.mark.parametrize(
    ("framing", "first_bytes"),
    [
        (b"Content-Length: 4194304\r\n", b"x" * 65536),  # past the 1 MiB buffered limit: streamed
        (b"Transfer-Encoding: chunked\r\n", b"10000\r\n" + b"x" * 65536 + b"\r\n"),
    ],
    ids=["content-length", "chunked"],
)
def test_a_stalled_streamed_body_aborts_the_upstream_request(sales, upstream, framing, first_bytes):
    # Given an upload whose first 64 KiB reach the upstream, then silence
    head = b"PUT /api/v1/sales/upload/big HTTP/1.1\r\nHost: gateway\r\n" + framing + b"\r\n"
    started = time.monotonic()
    sock = _open_slow_body(sales.port, head, first_bytes)
    assert upstream.upload_started.wait(BODY_TIMEOUT)

    # When the body timeout passes
    response, closed_at = _read_until_closed(sock)

    # Then the client gets a 408 and a closed connection, and the upstream's request was cut
    _assert_request_timeout(response)
    assert closed_at - started <= BODY_TIMEOUT + GRACE
    server = upstream._runner.server
    wait_until(lambda: not server.connections, timeout=2, message="the upstream connection to close")
    assert upstream.hits("/upload") == []


def test_a_body_that_keeps_arriving_is_not_cut(sales, upstream):
    # Each chunk arrives within the timeout, though the whole upload takes longer than it.
    head = b"POST /api/v1/sales/upload/trickle HTTP/1.1\r\nHost: gateway\r\nContent-Length: 6\r\n\r\n"
    with socket.create_connection(("127.0.0.1", sales.port), timeout=10) as sock:
        sock.sendall(head)
        for byte in b"abcdef":
            time.sleep(BODY_TIMEOUT / 3)
            sock.sendall(bytes([byte]))
        response = sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 200")
    assert b'"received_bytes": 6' in response


def test_the_request_timeout_problem_has_a_human_page(client):
    page = client.get("/problems/request-timeout")
    assert page.status_code == 200
    assert b"Request timeout" in page.content
    assert b"REQUEST_BODY_TIMEOUT" in page.content


def test_a_stalled_body_to_a_django_view_is_cut_too(sales):
    # Django reads bodies itself; the server's backstop answers a moment after the data plane would.
    head = (
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: gateway\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    started = time.monotonic()
    response, closed_at = _read_until_closed(_open_slow_body(sales.port, head, b"{"))
    status, headers, problem = _problem(response)
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    assert problem["code"] == "REQUEST_TIMEOUT"
    assert problem["instance"] == "/api/v1/auth/login"
    assert BODY_TIMEOUT <= closed_at - started <= BODY_TIMEOUT + GRACE
