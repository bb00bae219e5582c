"""The WebSocket proxy: authenticated before the upgrade, Origin-checked, frames and closes relayed."""

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.live import free_port


@pytest.fixture
def training(make_service, make_tenant, make_user, bearer, upstream, gateway):
    tenant = make_tenant("acme")
    make_service("training", targets=[upstream.url], auth_required=True, websocket_enabled=True)
    gateway.sync()
    return gateway.url.replace("http://", "ws://") + "/api/v1/training/ws", bearer(make_user(tenant=tenant))


def test_echo_through_the_proxy_with_identity_headers(training, upstream):
    url, headers = training
    with connect(url, additional_headers=headers) as socket:
        socket.send("hello")
        assert socket.recv(timeout=5) == "hello"
        socket.send(b"\x00\x01binary")
        assert socket.recv(timeout=5) == b"\x00\x01binary"
    received = upstream.hits("/ws")[0]
    assert received.headers["x-tenant-id"] == "acme"
    assert received.path == "/ws"


def test_query_token_for_browsers(training):
    url, headers = training
    token = headers["Authorization"].split()[1]
    with connect(f"{url}?access_token={token}") as socket:
        socket.send("hi")
        assert socket.recv(timeout=5) == "hi"


def test_no_token_is_refused_before_the_upgrade(training, upstream):
    url, _ = training
    with pytest.raises(InvalidStatus) as refused:
        connect(url)
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(response.body)["code"] == "AUTH_ERROR"
    assert upstream.hits() == []


def test_bad_token_is_refused(training, upstream):
    url, _ = training
    with pytest.raises(InvalidStatus):
        connect(url, additional_headers={"Authorization": "Bearer forged.token.value"})
    assert upstream.hits() == []


def test_foreign_origin_is_refused(training, upstream):
    url, headers = training
    for origin in ("https://evil.example", "null", "http://127.0.0.1:8000.evil.example"):
        with pytest.raises(InvalidStatus):
            connect(url, additional_headers=headers, origin=origin)
    assert upstream.hits() == []
    with connect(url, additional_headers=headers, origin="http://127.0.0.1:8000") as socket:
        socket.send("allowed")
        assert socket.recv(timeout=5) == "allowed"


def test_upstream_close_code_reaches_the_client(training):
    url, headers = training
    with connect(url, additional_headers=headers) as socket:
        socket.send("close:4000")
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=5)
    assert closed.value.rcvd.code == 4000


def test_unreachable_upstream_is_a_502_before_the_upgrade(
    make_service, make_tenant, make_user, bearer, gateway
):
    tenant = make_tenant("acme")
    make_service(
        "training",
        targets=[f"http://127.0.0.1:{free_port()}"],
        auth_required=True,
        websocket_enabled=True,
    )
    gateway.sync()
    url = gateway.url.replace("http://", "ws://") + "/api/v1/training/ws"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=bearer(make_user(tenant=tenant)))
    assert refused.value.response.status_code == 502
    assert json.loads(refused.value.response.body)["code"] == "BAD_GATEWAY"


def test_services_without_websockets_refuse_upgrades(make_service, upstream, gateway):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    with pytest.raises(InvalidStatus):
        connect(gateway.url.replace("http://", "ws://") + "/api/v1/sales/ws")
    assert upstream.hits() == []
