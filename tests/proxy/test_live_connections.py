"""Long-lived connections follow the registry (SPEC section 16): an open WebSocket or SSE
stream that the registry would now refuse is closed within 1 s, on every instance."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.live import GatewayServer

PROPAGATION_SECONDS = 1.0


@pytest.fixture
def second_gateway(gateway):
    server = GatewayServer().start()
    yield server
    server.stop()


@pytest.fixture
def training(make_service, make_tenant, make_user, upstream, gateway, second_gateway):
    from tenancy.tokens import tokens_for_user

    tenant = make_tenant("acme")
    service = make_service("training", targets=[upstream.url], auth_required=True, websocket_enabled=True)
    tokens = tokens_for_user(make_user(tenant=tenant))
    for server in (gateway, second_gateway):
        server.sync()
    return tenant, service, tokens


def _closes(sockets) -> list[tuple[int, float]]:
    """(close code, seconds until it arrived) for each open socket, read concurrently."""
    started = time.monotonic()
    results: list = [None] * len(sockets)

    def wait(index, socket):
        try:
            socket.recv(timeout=PROPAGATION_SECONDS + 2)
        except ConnectionClosed as closed:
            results[index] = (closed.rcvd.code if closed.rcvd else None, time.monotonic() - started)
        except TimeoutError:
            results[index] = (None, time.monotonic() - started)

    threads = [threading.Thread(target=wait, args=(i, s)) for i, s in enumerate(sockets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _lapse(tenant, service, tokens):
    tenant.subscription.status = "canceled"
    tenant.subscription.save()


def _deny_network(tenant, service, tokens):
    tenant.ip_deny = ["127.0.0.0/8", "::1/128"]
    tenant.save()


def _disable_service(tenant, service, tokens):
    service.enabled = False
    service.save()


def _revoke_token(tenant, service, tokens):
    from tenancy.revocation import revoke_jti
    from tenancy.tokens import GatewayAccessToken

    access = GatewayAccessToken(tokens["access"])
    revoke_jti(access["jti"], access["exp"])


@pytest.mark.parametrize(
    ("change", "code"),
    [(_lapse, 4402), (_deny_network, 4403), (_disable_service, 1001), (_revoke_token, 4401)],
    ids=["tenant lapses", "tenant IP deny", "service disabled", "token revoked"],
)
def test_open_websockets_are_closed_on_every_instance(training, gateway, second_gateway, change, code):
    tenant, service, tokens = training
    headers = {"Authorization": f"Bearer {tokens['access']}"}
    sockets = [
        connect(
            server.url.replace("http", "ws") + "/api/v1/training/ws", additional_headers=headers, legacy=True
        )
        for server in (gateway, second_gateway)
    ]
    for socket in sockets:  # both relays are up
        socket.send("ping")
        assert socket.recv(timeout=5) == "ping"

    change(tenant, service, tokens)
    closes = _closes(sockets)

    for close_code, seconds in closes:
        assert close_code == code
        assert seconds <= PROPAGATION_SECONDS


def _read_until_close(url: str, headers: dict, opened: threading.Barrier, results: list, index: int):
    with httpx.stream("GET", url, headers=headers, timeout=PROPAGATION_SECONDS + 5) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("retry:")
        opened.wait()
        started = time.monotonic()
        event = None
        for line in lines:
            if line == "event: close":
                event = json.loads(next(lines).removeprefix("data: "))
                break
        seconds = time.monotonic() - started
        results[index] = (event, seconds, [line for line in lines if line])  # then the stream ends


def test_sse_streams_of_a_revoked_token_end_with_event_close_on_every_instance(
    training, gateway, second_gateway
):
    _, _, tokens = training
    headers = {"Authorization": f"Bearer {tokens['access']}"}
    opened = threading.Barrier(3)
    results: list = [None, None]
    readers = [
        threading.Thread(
            target=_read_until_close,
            args=(server.url + "/api/v1/alerts/stream", headers, opened, results, index),
        )
        for index, server in enumerate((gateway, second_gateway))
    ]
    for reader in readers:
        reader.start()
    opened.wait(timeout=10)

    logout = httpx.post(
        gateway.url + "/api/v1/auth/logout", json={"refresh": tokens["refresh"]}, headers=headers, timeout=5
    )
    for reader in readers:
        reader.join(PROPAGATION_SECONDS + 5)

    assert logout.status_code in (200, 204)
    for event, seconds, after_close in results:
        assert event["code"] == "AUTH_ERROR" and event["status"] == 401
        assert seconds <= PROPAGATION_SECONDS + 0.5  # measured from before the logout call
        assert after_close == []
