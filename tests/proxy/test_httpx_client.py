"""The other upstream clients (UPSTREAM_CLIENT=httpx, pyreqwest) behave like the default aiohttp one."""

import hashlib
import json
import os
import time

import httpx
import pytest

from tests.live import GatewayServer, free_port
from tests.proxy.test_tls import mtls_upstream, pki  # noqa: F401 - the private PKI and an mTLS upstream

CLIENT_CLASSES = {
    "httpx": "proxy.upstream.HttpxUpstreamClient",
    "pyreqwest": "proxy.upstream_pyreqwest.PyreqwestUpstreamClient",
}


@pytest.fixture(params=sorted(CLIENT_CLASSES))
def httpx_gateway(request, transactional_db, settings):
    settings.RATE_LIMIT_DEFAULT = ""
    settings.UPSTREAM_CLIENT = request.param
    server = GatewayServer().start()
    yield server
    server.stop()


def test_the_runtime_uses_the_configured_client(httpx_gateway, settings):
    client = type(httpx_gateway.runtime.upstream)
    assert f"{client.__module__}.{client.__name__}" == CLIENT_CLASSES[settings.UPSTREAM_CLIENT]


def test_forwarding_streaming_and_sse(httpx_gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    httpx_gateway.sync()
    echo = httpx.post(
        f"{httpx_gateway.url}/api/v1/sales/echo?a=1", content=b"hello", headers={"X-Custom": "1"}
    )
    assert echo.json()["body"] == "hello" and echo.json()["query"] == "a=1"
    assert upstream.hits("/echo")[0].headers["x-custom"] == "1"
    payload = os.urandom(3 * 1024 * 1024)
    upload = httpx.post(f"{httpx_gateway.url}/api/v1/sales/upload", content=iter([payload]), timeout=30)
    assert upload.json()["sha256"] == hashlib.sha256(payload).hexdigest()
    arrivals = []
    with httpx.stream("GET", f"{httpx_gateway.url}/api/v1/sales/sse?count=3&interval=0.3") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.time(), json.loads(line[6:])["t"]))
    assert len(arrivals) == 3
    assert all(arrived - sent < 0.25 for arrived, sent in arrivals)


def test_errors_map_the_same_way(httpx_gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url], read_timeout=0.5, retries=0)
    make_service("gone", targets=[f"http://127.0.0.1:{free_port()}"], retries=0)
    httpx_gateway.sync()
    assert httpx.get(f"{httpx_gateway.url}/api/v1/sales/slow?delay=2").json()["code"] == "UPSTREAM_TIMEOUT"
    assert httpx.get(f"{httpx_gateway.url}/api/v1/gone/x").json()["code"] == "BAD_GATEWAY"
    assert httpx.get(f"{httpx_gateway.url}/api/v1/sales/status/418").status_code == 418


def test_a_target_with_its_own_ca_and_client_certificate_is_reached(
    httpx_gateway,
    make_service,
    mtls_upstream,  # noqa: F811
    pki,  # noqa: F811
):
    # pyreqwest hands such a target to aiohttp (the snapshot holds an ssl.SSLContext).
    tls = {"tls_ca_file": str(pki.ca)}
    make_service("bare", targets=[{"url": mtls_upstream.url, **tls}], retries=0)
    client_cert = {"tls_client_cert_file": str(pki.client_cert), "tls_client_key_file": str(pki.client_key)}
    make_service("sales", targets=[{"url": mtls_upstream.url, **tls, **client_cert}], retries=0)
    httpx_gateway.sync()
    assert httpx.get(f"{httpx_gateway.url}/api/v1/bare/x").status_code == 502
    assert httpx.get(f"{httpx_gateway.url}/api/v1/sales/x").status_code == 200
    assert len(mtls_upstream.hits("/x")) == 1
