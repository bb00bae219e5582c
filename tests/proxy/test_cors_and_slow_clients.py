"""CORS origin checks and slow clients, as a browser and an attacker would exercise them."""

import socket
import time

import httpx
import pytest

from tests.live import trickle_headers

ALLOWED = "http://127.0.0.1:8000"


@pytest.fixture
def sales(make_service, upstream, gateway):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    return gateway


def test_allowed_origin_gets_credentials_cors_headers(sales):
    response = httpx.get(f"{sales.url}/api/v1/sales/x", headers={"Origin": ALLOWED})
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in response.headers["vary"]
    exposed = response.headers["access-control-expose-headers"]
    for name in ("X-Request-ID", "X-Process-Time", "RateLimit", "RateLimit-Policy"):
        assert name in exposed


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "http://127.0.0.1:8000.evil.example",
        "http://evil127.0.0.1:8000",
        "https://127.0.0.1:8000",
        "http://127.0.0.1:80001",
        "http://127.0.0.1:8000/",
        "HTTP://127.0.0.1:8000x",
    ],
)
def test_suffix_tricks_and_null_origin_get_no_cors_headers(sales, origin):
    response = httpx.get(f"{sales.url}/api/v1/sales/x", headers={"Origin": origin})
    assert "access-control-allow-origin" not in response.headers
    assert "*" not in response.headers.get("access-control-allow-origin", "")


def test_preflight_is_answered_by_the_gateway(sales, upstream):
    response = httpx.options(
        f"{sales.url}/api/v1/sales/x",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "Authorization, Content-Type"
    assert upstream.hits() == []


def test_preflight_from_a_foreign_origin_is_refused(sales, upstream):
    response = httpx.options(
        f"{sales.url}/api/v1/sales/x",
        headers={
            "Origin": "null",
            "Access-Control-Request-Method": "DELETE",
        },
    )
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert upstream.hits() == []


def test_a_client_that_trickles_its_headers_is_disconnected(sales, settings, upstream):
    settings.REQUEST_HEADER_TIMEOUT = 1.0
    data, elapsed = trickle_headers(sales.port)
    assert data.startswith(b"HTTP/1.1 408")
    assert elapsed < 3
    assert upstream.hits() == []


def test_an_idle_connection_that_sends_nothing_is_closed(sales, settings):
    settings.REQUEST_HEADER_TIMEOUT = 0.5
    with socket.create_connection(("127.0.0.1", sales.port), timeout=5) as sock:
        started = time.monotonic()
        data = sock.recv(4096)
        assert data.startswith(b"HTTP/1.1 408")
        assert sock.recv(4096) == b""
        assert time.monotonic() - started < 2
