"""GATEWAY_SERVER=granian: the guarantees it keeps (README, Performance), each through a real
granian process: proxying, no Nagle stall (TCP_NODELAY), the request-header deadline, the body
timeout on Django's and the data plane's paths, HTTP/2 by ALPN for a proxied request and for
SSE, the SSE drain on SIGTERM. The TLS minimum version: tests/proxy/test_tls.py, per server."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import pytest

from tests.alerts.conftest import tenant_user  # noqa: F401 - a tenant user and its token
from tests.live import GatewayProcess, trickle_headers
from tests.proxy.test_slow_body import _open_slow_body, _problem, _read_until_closed
from tests.proxy.test_tls import _client_context, pki, refusal_to_serve  # noqa: F401 - the private PKI fixture

GRANIAN = {"GATEWAY_SERVER": "granian", "RATE_LIMIT_DEFAULT": ""}


@pytest.fixture
def granian_gateway(transactional_db):
    started: list[GatewayProcess] = []

    def start(**extra_env: str) -> GatewayProcess:
        process = GatewayProcess(extra_env={**GRANIAN, **extra_env})
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


def test_granian_proxies_a_request(granian_gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    gateway = granian_gateway()

    response = httpx.post(f"{gateway.url}/api/v1/sales/echo?a=1", content=b"hello", headers={"X-Custom": "1"})

    assert response.status_code == 200
    assert response.json()["body"] == "hello" and response.json()["query"] == "a=1"
    assert response.headers["x-request-id"]
    assert upstream.hits("/echo")[0].headers["x-custom"] == "1"


def test_granian_answers_keep_alive_requests_without_a_nagle_stall(granian_gateway, make_service, upstream):
    # Without TCP_NODELAY a response written in two parts waits for the client's delayed ACK
    # (~40 ms on Linux) on every keep-alive request; with it, a loopback round trip is ~1 ms.
    make_service("sales", targets=[upstream.url])
    gateway = granian_gateway()
    timings = []
    with httpx.Client() as client:
        for _ in range(21):
            started = time.perf_counter()
            assert client.post(f"{gateway.url}/api/v1/sales/echo", content=b"x" * 2000).status_code == 200
            timings.append(time.perf_counter() - started)
    assert sorted(timings)[len(timings) // 2] < 0.03


def test_granian_cuts_a_client_that_trickles_its_headers(granian_gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    gateway = granian_gateway(REQUEST_HEADER_TIMEOUT="1")
    _, elapsed = trickle_headers(gateway.port)
    assert elapsed < 3.5  # closed (granian sends no 408 status line), not served after 6 s
    assert upstream.hits() == []


def test_granian_answers_a_stalled_body_with_408_on_django_and_service_paths(
    granian_gateway, make_service, upstream
):
    make_service("sales", targets=[upstream.url])
    gateway = granian_gateway(REQUEST_BODY_TIMEOUT="2")
    outcomes = {}
    for path in ("/api/v1/auth/login", "/api/v1/sales/upload"):
        head = f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        head += "Content-Length: 100\r\n\r\n"
        started = time.monotonic()
        response, closed_at = _read_until_closed(_open_slow_body(gateway.port, head.encode(), b"{"))
        outcomes[path] = (*_problem(response), closed_at - started)
    for path, (status, headers, problem, elapsed) in outcomes.items():
        assert status == 408, path
        assert headers["content-type"] == "application/problem+json"
        assert problem["code"] == "REQUEST_TIMEOUT" and problem["instance"] == path
        assert problem["request_id"] == headers["x-request-id"]
        assert 2 <= elapsed <= 4.5, (path, elapsed)
    assert "x-process-time" in outcomes["/api/v1/sales/upload"][1]  # the data plane's own answer
    assert "x-process-time" not in outcomes["/api/v1/auth/login"][1]  # the backstop's


def _tls_granian(start, pki, min_version: str) -> GatewayProcess:  # noqa: F811
    return start(
        GATEWAY_TLS_CERT_FILE=str(pki.server_cert),
        GATEWAY_TLS_KEY_FILE=str(pki.server_key),
        GATEWAY_TLS_MIN_VERSION=min_version,
    )


def test_granian_speaks_http2_by_alpn_for_a_proxied_request_and_sse(
    granian_gateway,
    make_service,
    upstream,
    pki,  # noqa: F811
):
    make_service("sales", targets=[upstream.url])
    gateway = _tls_granian(granian_gateway, pki, "TLSv1.2")
    with httpx.Client(verify=_client_context(pki), http2=True) as client:
        proxied = client.get(f"{gateway.url}/api/v1/sales/x")
        arrivals = []
        with client.stream("GET", f"{gateway.url}/api/v1/sales/sse?count=3&interval=0.3") as stream:
            assert stream.http_version == "HTTP/2"
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.time())
        with httpx.Client(verify=_client_context(pki)) as http1:
            assert http1.get(f"{gateway.url}/health/live").http_version == "HTTP/1.1"
    assert proxied.status_code == 200 and proxied.http_version == "HTTP/2"
    assert proxied.headers["strict-transport-security"].startswith("max-age=31536000")
    assert upstream.hits("/x")[0].headers.get("x-forwarded-proto") == "https"
    assert len(arrivals) == 3
    assert arrivals[-1] - arrivals[0] > 0.45  # streamed as sent (0.3 s apart), not buffered


@pytest.mark.redis
def test_sigterm_ends_sse_streams_at_once_under_granian(granian_gateway, tenant_user):  # noqa: F811
    _, _, token = tenant_user("acme")
    gateway = granian_gateway()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{gateway.url}/api/v1/alerts/stream", headers=headers, timeout=10) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        next(lines)  # the stream is open
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        for _ in lines:  # ends when the gateway closes the stream
            pass
        ended = time.monotonic() - signalled
    try:
        gateway.process.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("granian did not exit within 10 s of SIGTERM")
    exited = time.monotonic() - signalled
    assert ended < 2
    assert exited < 5  # well before granian's kill timeout would have to cut the stream


def test_granian_refuses_a_key_it_cannot_read_with_a_clear_message(pki, tmp_path):  # noqa: F811

    from cryptography.hazmat.primitives import serialization

    # The server's own key, re-written in the traditional format ("BEGIN EC/RSA PRIVATE KEY"):
    # Python's ssl reads it, granian does not.
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    traditional = tmp_path / "server-traditional.key"
    traditional.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    environment = {
        **GRANIAN,
        "GATEWAY_TLS_CERT_FILE": str(pki.server_cert),
        "GATEWAY_TLS_KEY_FILE": str(traditional),
    }
    assert "PKCS#8" in refusal_to_serve(environment)
