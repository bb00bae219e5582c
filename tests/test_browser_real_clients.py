"""The browser's own client APIs against a live gateway, in Debian's Chromium: `EventSource`
on the alert stream (including its own reconnect with Last-Event-ID) and a `WebSocket` to
the demo training service.

The page lives on a front-end origin of its own (a real HTTP server on loopback), listed
in CORS_ORIGINS as a deployment lists its web app: the calls are cross-origin, as a
single-page app's are, so CORS on the stream and the WebSocket Origin check take part.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import httpx
import pytest

from tests.test_demo_upstream import PORT_COUNT, START_TIMEOUT_SECONDS, free_port_block, read_lines, stop
from tests.test_demo_upstream import start_upstream as start_demo_upstream

pytestmark = pytest.mark.browser

STREAM = "/api/v1/alerts/stream"
TRAINING_SOCKET = "/api/v1/training/ws"
# Short enough for a quick test, long enough that an alert published right after the drop
# is certainly published while the browser waits to reconnect.
SSE_RETRY_MS = 1500
BROWSER_WAIT_MS = 10_000
FRONT_PAGE = b"<!doctype html><html><head><title>Bakery console</title></head><body>console</body></html>"
DEMO_USER = "owner@bakery-madrid.example"
CLOSE_CODE = 4000


class _FrontPage(BaseHTTPRequestHandler):
    """The web app's origin: every path is the same empty page the test scripts."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(FRONT_PAGE)))
        self.end_headers()
        self.wfile.write(FRONT_PAGE)

    def log_message(self, *args):
        pass


@pytest.fixture
def front():
    """A real HTTP server on loopback serving the front-end page; yields its origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FrontPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def gateway(transactional_db, settings, front):
    from tests.live import GatewayServer

    settings.RATE_LIMIT_DEFAULT = ""
    settings.CORS_ORIGINS = [front]
    settings.SSE_RETRY_MS = SSE_RETRY_MS
    server = GatewayServer().start()
    yield server
    server.stop()


@pytest.fixture
def alert_token(transactional_db) -> str:
    """An access token of a tenant's operator, who may read and publish its alerts."""
    from datetime import timedelta

    from django.utils import timezone

    from tenancy.models import Subscription, Tenant, User
    from tenancy.tokens import tokens_for_user

    tenant = Tenant.objects.create(name="Bakery Bilbao", slug="bilbao")
    Subscription.objects.create(tenant=tenant, current_period_end=timezone.now() + timedelta(days=30))
    user = User.objects.create_user(
        "ops@bilbao.example", password="pw-123456789", tenant=tenant, role="staff"
    )
    return tokens_for_user(user)["access"]


def publish(gateway_url: str, token: str, message: str) -> dict:
    response = httpx.post(
        f"{gateway_url}/api/v1/alerts",
        json={"severity": "critical", "message": message},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    return response.json()


OPEN_EVENT_SOURCE = """
(url) => {
    window.seen = [];
    window.opens = 0;
    window.errors = 0;
    const source = new EventSource(url);
    source.onopen = () => { window.opens += 1; };
    source.onerror = () => { window.errors += 1; };
    source.addEventListener("alert", (event) => {
        const alert = JSON.parse(event.data);
        window.seen.push({id: event.lastEventId, message: alert.message, alert_id: alert.alert_id});
    });
    window.source = source;
}
"""


def test_event_source_receives_alerts_and_replays_what_it_missed_after_a_reconnect(
    page, front, gateway, alert_token
):
    stream_requests = []
    page.on("request", lambda r: stream_requests.append(r) if STREAM in r.url else None)
    page.goto(front)
    page.evaluate(OPEN_EVENT_SOURCE, f"{gateway.url}{STREAM}?access_token={alert_token}")
    page.wait_for_function("window.opens === 1", timeout=BROWSER_WAIT_MS)

    # A live alert arrives, with its event id.
    first = publish(gateway.url, alert_token, "oven 3 is overheating")
    page.wait_for_function("window.seen.length === 1", timeout=BROWSER_WAIT_MS)
    assert page.evaluate("window.seen") == [
        {"id": first["event_id"], "message": "oven 3 is overheating", "alert_id": first["alert_id"]}
    ]

    # The gateway ends every stream, as a draining instance does; the browser notices...
    gateway.loop.call_soon_threadsafe(gateway.runtime.alert_hub.close_all)
    page.wait_for_function("window.errors === 1", timeout=BROWSER_WAIT_MS)
    # ...and while it waits `retry` ms to reconnect, another alert is published.
    missed = publish(gateway.url, alert_token, "freezer door open")
    assert page.evaluate("[window.opens, window.source.readyState]") == [1, 0]  # 0: CONNECTING

    # The browser reconnects by itself with Last-Event-ID, and the missed alert is replayed.
    page.wait_for_function("window.seen.length === 2", timeout=BROWSER_WAIT_MS)
    assert page.evaluate("window.opens") == 2
    assert stream_requests[-1].all_headers().get("last-event-id") == first["event_id"]
    # After the replay the stream is live again, and nothing arrives twice.
    after = publish(gateway.url, alert_token, "oven 3 back to normal")
    page.wait_for_function("window.seen.length === 3", timeout=BROWSER_WAIT_MS)
    assert [event["id"] for event in page.evaluate("window.seen")] == [
        first["event_id"],
        missed["event_id"],
        after["event_id"],
    ]


def test_event_source_reopened_with_the_last_id_in_the_query_replays_too(page, front, gateway, alert_token):
    # A page that closed its stream (navigation, a tab put to sleep) reopens it itself: it
    # cannot set Last-Event-ID on a new EventSource, so the id goes in the query.
    page.goto(front)
    url = f"{gateway.url}{STREAM}?access_token={alert_token}"
    page.evaluate(OPEN_EVENT_SOURCE, url)
    page.wait_for_function("window.opens === 1", timeout=BROWSER_WAIT_MS)
    first = publish(gateway.url, alert_token, "first")
    page.wait_for_function("window.seen.length === 1", timeout=BROWSER_WAIT_MS)
    page.evaluate("window.source.close()")

    missed = [publish(gateway.url, alert_token, f"missed {n}")["event_id"] for n in range(2)]
    page.evaluate(OPEN_EVENT_SOURCE, f"{url}&last_event_id={first['event_id']}")

    page.wait_for_function("window.seen.length === 2", timeout=BROWSER_WAIT_MS)
    assert [event["id"] for event in page.evaluate("window.seen")] == missed


# --- WebSocket ---------------------------------------------------------------------------------


@pytest.fixture
def demo(transactional_db, monkeypatch):
    """The demo upstream program on loopback and the demo fixture loaded against it."""
    from django.core.management import call_command

    base = free_port_block(PORT_COUNT)
    process = start_demo_upstream(base)
    try:
        read_lines(process, PORT_COUNT, START_TIMEOUT_SECONDS)
        monkeypatch.setenv("DEMO_UPSTREAM_HOST", "127.0.0.1")
        monkeypatch.setenv("DEMO_UPSTREAM_BASE_PORT", str(base))
        call_command("load_demo", stdout=StringIO())
        yield base
    finally:
        stop(process)
        process.stdout.close()


TALK_TO_TRAINING = """
async ([socketUrl, closeCode]) => {
    const socket = new WebSocket(socketUrl);
    socket.binaryType = "arraybuffer";
    const received = [];
    const closed = new Promise((resolve) => {
        socket.onclose = (event) => resolve({code: event.code, reason: event.reason});
    });
    const opened = await new Promise((resolve) => {
        socket.onopen = () => resolve(true);
        socket.onerror = () => resolve(false);
    });
    if (!opened) {
        return {opened, close: await closed, received};
    }
    const twoMessages = new Promise((resolve) => {
        socket.onmessage = (event) => {
            const data = event.data;
            received.push(typeof data === "string" ? data : Array.from(new Uint8Array(data)));
            if (received.length === 2) resolve();
        };
    });
    socket.send("epoch 1: loss 0.42");
    socket.send(new Uint8Array([1, 2, 3, 255]));
    await twoMessages;
    socket.send("close:" + closeCode);
    return {opened, close: await closed, received};
}
"""


def training_socket_url(gateway_url: str) -> str:
    """The training WebSocket with a demo member's access token, from a real login (a page on
    another origin cannot log in itself: see the report on CORS for Django-served endpoints).
    """
    from fixtures.demo_data import DEMO_PASSWORD

    login = httpx.post(
        f"{gateway_url}/api/v1/auth/login", json={"username": DEMO_USER, "password": DEMO_PASSWORD}
    )
    assert login.status_code == 200, login.text
    return f"{gateway_url.replace('http', 'ws', 1)}{TRAINING_SOCKET}?access_token={login.json()['access']}"


def test_a_page_talks_to_the_demo_training_service_over_a_websocket(page, front, demo, gateway):
    page.goto(front)
    result = page.evaluate(TALK_TO_TRAINING, [training_socket_url(gateway.url), CLOSE_CODE])

    assert result["opened"] is True
    # Text and binary frames cross both ways; the upstream's close code reaches the page.
    assert result["received"] == ["epoch 1: loss 0.42", [1, 2, 3, 255]]
    assert result["close"]["code"] == CLOSE_CODE


def test_a_websocket_from_an_origin_outside_the_allowlist_is_refused(page, demo, gateway):
    # The gateway's own origin is not in CORS_ORIGINS here: only the front-end's is.
    page.goto(f"{gateway.url}/health/live")
    result = page.evaluate(TALK_TO_TRAINING, [training_socket_url(gateway.url), CLOSE_CODE])

    assert result["opened"] is False and result["close"]["code"] == 1006  # refused before the 101
    assert result["received"] == []
