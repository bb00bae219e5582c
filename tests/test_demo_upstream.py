"""The demo upstream program, run as `make run` runs it: a real process on loopback ports."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from fixtures.demo_ports import demo_port_map

BASE_DIR = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 15
PORT_COUNT = len(demo_port_map(0))


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(count: int, attempts: int = 50) -> int:
    """A base port with `count` consecutive free loopback ports above it."""
    for _ in range(attempts):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = sock.getsockname()[1]
        if base + count < 65536 and all(_bindable(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no block of {count} free ports found")


def read_lines(process: subprocess.Popen, count: int, timeout: float) -> list[str]:
    """The first `count` lines the process prints, or fail after `timeout` seconds."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while len(lines) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise AssertionError(f"only got {lines!r} within {timeout} s")
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"process exited ({process.poll()}) after {lines!r}")
            lines.append(line.decode().rstrip("\n"))
    return lines


def start_upstream(base_port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DEMO_UPSTREAM_HOST": "127.0.0.1",
        "DEMO_UPSTREAM_BASE_PORT": str(base_port),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "fixtures.demo_upstream"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        bufsize=0,  # unbuffered: select() then sees every line that was printed
    )


def stop(process: subprocess.Popen, signum: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(signum)
    try:
        return process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        raise


@pytest.fixture(scope="module")
def upstream():
    base = free_port_block(PORT_COUNT)
    process = start_upstream(base)
    try:
        read_lines(process, PORT_COUNT, START_TIMEOUT_SECONDS)
        yield {name: f"http://127.0.0.1:{port}" for name, port in demo_port_map(base).items()}
    finally:
        stop(process)
        process.stdout.close()


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=10, trust_env=False) as http:
        yield http


def test_prints_one_line_per_port_and_stops_cleanly_on_sigint():
    base = free_port_block(PORT_COUNT)
    process = start_upstream(base)
    try:
        lines = read_lines(process, PORT_COUNT, START_TIMEOUT_SECONDS)
        assert lines == [
            f"demo upstream {name} listening on http://127.0.0.1:{port}"
            for name, port in demo_port_map(base).items()
        ]
        assert stop(process, signal.SIGINT) == 0
        assert process.stdout.read().decode().strip() == "demo upstream stopped"
        assert all(_bindable(port) for port in demo_port_map(base).values())
    finally:
        stop(process)
        process.stdout.close()


def test_a_busy_port_is_a_clear_error(upstream):
    base = int(upstream["fakes"].rsplit(":", 1)[1])
    process = start_upstream(base)
    try:
        assert process.wait(START_TIMEOUT_SECONDS) == 1
        assert "cannot listen on 127.0.0.1" in process.stdout.read().decode()
    finally:
        stop(process)
        process.stdout.close()


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_echo_returns_exactly_what_arrived(upstream, client, method):
    body = b'{"loaf": "pan de pueblo", "qty": 3}' if method != "GET" else b""
    response = client.request(
        method,
        f"{upstream['sales']}/echo/deep/a%2Fb?b=2&a=1&a=%20x",
        content=body,
        headers=[("X-Custom", "value"), ("X-Repeated", "1"), ("X-Repeated", "2")],
    )
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["method"] == method
    assert echoed["path"] == "/echo/deep/a%2Fb"
    assert echoed["query"] == "b=2&a=1&a=%20x"
    assert echoed["headers"]["x-custom"] == "value"
    assert echoed["headers"]["x-repeated"] == "1, 2"
    assert echoed["headers"]["host"] == upstream["sales"].removeprefix("http://")
    assert (echoed["body"], echoed["body_base64"]) == (body.decode(), False)
    assert echoed["service"] == "sales"


def test_echo_sends_binary_bodies_as_base64(upstream, client):
    body = bytes(range(256))
    echoed = client.post(f"{upstream['orders']}/echo", content=body).json()
    assert echoed["body_base64"] is True
    assert base64.b64decode(echoed["body"]) == body


def test_every_service_port_is_healthy_and_documents_itself(upstream, client):
    for name in ("sales", "inventory", "forecasting", "orders", "training"):
        assert client.get(f"{upstream[name]}/health").json()["status"] == "ok"
        document = client.get(f"{upstream[name]}/openapi.json").json()
        assert document["openapi"].startswith("3.")
        assert set(document["paths"]) == {"/echo", "/items"}
        for operations in document["paths"].values():
            assert all(op["responses"]["200"]["description"] for op in operations.values())
    assert client.get(f"{upstream['fakes']}/health").status_code == 200


def test_sse_events_arrive_one_by_one(upstream, client):
    events = []
    url = f"{upstream['forecasting']}/sse?count=3&interval=0.5"
    with client.stream("GET", url) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append((time.time(), json.loads(line.removeprefix("data: "))))
    assert [data["n"] for _, data in events] == [0, 1, 2]
    first_arrived, last_sent = events[0][0], events[-1][1]["sent_at"]
    assert first_arrived < last_sent - 0.5  # not buffered until the end
    assert events[-1][1]["sent_at"] - events[0][1]["sent_at"] >= 0.9


def test_slow_status_bytes_and_upload(upstream, client):
    started = time.monotonic()
    assert client.get(f"{upstream['inventory']}/slow?delay=0.3").json() == {"slept": 0.3}
    assert time.monotonic() - started >= 0.3
    response = client.get(f"{upstream['inventory']}/status/503")
    assert (response.status_code, response.json()["status"]) == (503, 503)
    assert client.get(f"{upstream['inventory']}/status/204").content == b""
    assert client.get(f"{upstream['inventory']}/sse?count=x").status_code == 400
    assert len(client.get(f"{upstream['inventory']}/bytes?n=200001").content) == 200_001
    payload = os.urandom(300_000)
    answer = client.post(f"{upstream['inventory']}/upload", content=payload).json()
    assert answer == {"received_bytes": 300_000, "sha256": hashlib.sha256(payload).hexdigest()}


async def test_training_websocket_echoes_frames_and_closes_on_request(upstream):
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{upstream['training']}/ws") as ws,
    ):
        await ws.send_str("hola")
        assert (await ws.receive(timeout=5)).data == "hola"
        await ws.send_bytes(b"\x00\xff")
        assert (await ws.receive(timeout=5)).data == b"\x00\xff"
        await ws.send_str("close:4000")
        message = await ws.receive(timeout=5)
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert (message.data, ws.close_code) == (4000, 4000)


async def test_only_training_accepts_websockets(upstream):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(f"{upstream['sales']}/ws")


def test_fake_nominatim_is_deterministic_and_counts_requests(upstream, client):
    fakes = upstream["fakes"]
    before = client.get(f"{fakes}/_stats").json()["search_requests"]
    headers = {"User-Agent": "gateway-test/1.0"}
    madrid = client.get(f"{fakes}/search", params={"q": "Madrid", "format": "json"}, headers=headers)
    assert madrid.status_code == 200
    [place] = madrid.json()
    assert (place["lat"], place["lon"]) == ("40.4167047", "-3.7035825")
    assert "Madrid" in place["display_name"] and len(place["boundingbox"]) == 4
    elsewhere = [client.get(f"{fakes}/search", params={"q": "Obrador 7", "format": "json"}) for _ in "ab"]
    assert elsewhere[0].json() == elsewhere[1].json() != madrid.json()
    assert client.get(f"{fakes}/search", params={"q": "", "format": "json"}).json() == []
    assert client.get(f"{fakes}/search", params={"q": "x", "format": "xml"}).status_code == 400
    stats = client.get(f"{fakes}/_stats").json()
    assert stats["search_requests"] == before + 5
    assert stats["last_user_agent"] == client.headers["User-Agent"]


def test_fake_whatsapp_records_messages(upstream, client):
    fakes = upstream["fakes"]
    message = {
        "messaging_product": "whatsapp",
        "to": "+34600111222",
        "type": "text",
        "text": {"body": "Oven 2 is overheating"},
    }
    response = client.post(
        f"{fakes}/whatsapp/v17.0/1098765/messages",
        json=message,
        headers={"Authorization": "Bearer wa-token"},
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": "+34600111222", "wa_id": "34600111222"}]
    assert answer["messages"][0]["id"].startswith("wamid.")
    recorded = client.get(f"{fakes}/whatsapp/_messages").json()["messages"][-1]
    assert recorded["id"] == answer["messages"][0]["id"]
    assert (recorded["version"], recorded["phone_number_id"]) == ("v17.0", "1098765")
    assert (recorded["payload"], recorded["authorization"]) == (message, "Bearer wa-token")
    refused = client.post(f"{fakes}/whatsapp/v17.0/1098765/messages", json={"to": "+34600111222"})
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "OAuthException"


def test_the_demo_training_websocket_through_the_gateway(upstream, transactional_db):
    import io

    from django.core.management import call_command
    from websockets.sync.client import connect

    from registry.models import Target
    from tenancy.models import User
    from tenancy.tokens import tokens_for_user
    from tests.live import GatewayServer

    # Given: the demo data, its training target pointed at this test's demo upstream.
    call_command("load_demo", stdout=io.StringIO())
    Target.objects.filter(service__slug="training").update(url=upstream["training"])
    owner = User.objects.get(email="owner@bakery-madrid.example")
    bearer = {"Authorization": f"Bearer {tokens_for_user(owner)['access']}"}
    with GatewayServer() as gateway:
        gateway.sync()
        url = gateway.url.replace("http://", "ws://") + "/api/v1/training/ws"
        # When: a client talks to the training service through the gateway.
        with connect(url, additional_headers=bearer) as ws:
            ws.send("hola")
            text = ws.recv(timeout=5)
            ws.send(b"\x00\xff")
            binary = ws.recv(timeout=5)
            ws.send("close:4000")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
    # Then: frames come back as sent, and the service's close code reaches the client.
    assert (text, binary) == ("hola", b"\x00\xff")
    assert closed.value.rcvd.code == 4000
