"""Soak (issue: reliability): mixed traffic at a fixed rate against one gateway process, after
a warm-up; its resident memory must grow less than 10 % and its open file descriptors stay
flat, and nothing may answer 5xx.

CI runs the short form (SOAK_SECONDS=60, the default); the full five minutes:
    SOAK_SECONDS=300 make test PYTEST_ARGS="tests/reliability/test_soak.py"
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest
from websockets.sync.client import connect

from tests.alerts.conftest import SseReader
from tests.reliability.conftest import staff_token

SOAK_SECONDS = int(os.environ.get("SOAK_SECONDS", "60"))
WARMUP_SECONDS = 10
RSS_GROWTH_LIMIT = 0.10
FD_GROWTH_LIMIT = 10
SSE_STREAMS = 2
SSE_RECONNECT_SECONDS = 10  # one stream is replaced now and then: subscriptions must not leak
# Requests per second of each kind (fixed rate: a late tick is skipped, never bunched up).
RATES = {
    "proxy-get": 20,
    "proxy-post": 5,
    "manage-get": 2,
    "alert": 1,
    "websocket": 1,
    "metrics": 0.5,
}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, status: int | None, error: str = "") -> None:
        with self.lock:
            self.statuses[(kind, status)] += 1
            if error:
                self.errors.append(f"{kind}: {error}")

    def server_errors(self) -> dict:
        return {key: n for key, n in self.statuses.items() if key[1] is None or key[1] >= 500}


def paced(kind: str, rate: float, action, tally: Tally, stop: threading.Event) -> threading.Thread:
    """Run `action` `rate` times a second on a fixed schedule until `stop`."""

    def loop() -> None:
        interval = 1.0 / rate
        next_tick = time.monotonic()
        while not stop.is_set():
            try:
                tally.record(kind, action())
            except Exception as exc:  # a transport error is a failure of the soak, keep counting
                tally.record(kind, None, repr(exc))
            next_tick += interval
            delay = next_tick - time.monotonic()
            if delay < 0:
                next_tick = time.monotonic()  # behind schedule: skip, do not burst
            else:
                stop.wait(delay)

    thread = threading.Thread(target=loop, name=f"soak-{kind}", daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 120)
def test_soak_mixed_traffic_keeps_memory_and_descriptors_flat(
    gateway_processes, make_service, upstream, tenant_user
):
    # Given: a JWT-protected service, a WebSocket service, a tenant that streams alerts, staff.
    make_service("sales", targets=[upstream.url], auth_required=True)
    make_service("training", targets=[upstream.url], auth_required=True, websocket_enabled=True)
    _, _, token = tenant_user("acme")
    tenant_auth = {"Authorization": f"Bearer {token}"}
    staff_auth = {"Authorization": f"Bearer {staff_token()}"}
    gateway = gateway_processes()
    base, pid = gateway.url, gateway.process.pid
    ws_url = base.replace("http://", "ws://") + "/api/v1/training/ws"
    client = httpx.Client(base_url=base, timeout=10, limits=httpx.Limits(max_connections=32))
    counter = iter(range(10**9))

    def proxy_get() -> int:
        return client.get(f"/api/v1/sales/items?n={next(counter)}", headers=tenant_auth).status_code

    def proxy_post() -> int:
        return client.post(
            "/api/v1/sales/orders",
            json={"n": next(counter), "items": ["bread"] * 10},
            headers=tenant_auth,
        ).status_code

    def manage_get() -> int:
        return client.get("/api/manage/services/", headers=staff_auth).status_code

    def alert() -> int:
        return client.post(
            "/api/v1/alerts", json={"severity": "info", "message": "soak"}, headers=tenant_auth
        ).status_code

    def websocket() -> int:
        with connect(ws_url, additional_headers=tenant_auth, open_timeout=5, close_timeout=5) as ws:
            ws.send("ping")
            return 101 if ws.recv(timeout=5) == "ping" else 0

    def metrics() -> int:
        return client.get("/metrics").status_code

    actions = {
        "proxy-get": proxy_get,
        "proxy-post": proxy_post,
        "manage-get": manage_get,
        "alert": alert,
        "websocket": websocket,
        "metrics": metrics,
    }
    tally = Tally()
    stop = threading.Event()
    streams = [SseReader(f"{base}/api/v1/alerts/stream", tenant_auth) for _ in range(SSE_STREAMS)]
    threads = [paced(kind, RATES[kind], actions[kind], tally, stop) for kind in RATES]
    received = 0
    try:
        # When: a warm-up (pools, caches, lazy imports), then the measured run.
        time.sleep(WARMUP_SECONDS)
        rss_start, fds_start = rss_kib(pid), open_fds(pid)
        started = time.monotonic()
        last_reconnect = started
        peak_rss = rss_start
        while time.monotonic() - started < SOAK_SECONDS:
            time.sleep(1)
            peak_rss = max(peak_rss, rss_kib(pid))
            if time.monotonic() - last_reconnect >= SSE_RECONNECT_SECONDS:
                last_reconnect = time.monotonic()
                old = streams.pop(0)
                received += len(old.drain(0.01))
                old.close()
                streams.append(SseReader(f"{base}/api/v1/alerts/stream", tenant_auth))
        rss_end, fds_end = rss_kib(pid), open_fds(pid)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        for stream in streams:
            received += len(stream.drain(0.01))
            stream.close()
        client.close()

    # Then: no 5xx and no transport errors, every kind of traffic flowed at about its rate.
    summary = {f"{kind} {status}": n for (kind, status), n in sorted(tally.statuses.items(), key=str)}
    print(
        f"soak {SOAK_SECONDS}s: rss {rss_start}->{rss_end} KiB (peak {peak_rss}), "
        f"fds {fds_start}->{fds_end}, sse events {received}, {summary}"
    )
    assert tally.server_errors() == {}, tally.errors[:5]
    expected = {
        "proxy-get": 200,
        "proxy-post": 200,
        "manage-get": 200,
        "alert": 201,
        "websocket": 101,
        "metrics": 200,
    }
    unexpected = {k: n for k, n in tally.statuses.items() if k[1] != expected[k[0]]}
    assert unexpected == {}, unexpected
    total_seconds = WARMUP_SECONDS + SOAK_SECONDS
    for kind, rate in RATES.items():
        assert tally.statuses[(kind, expected[kind])] >= 0.8 * rate * total_seconds, kind
    assert received >= 0.8 * RATES["alert"] * total_seconds  # streams kept receiving
    # And: memory and descriptors stayed flat.
    assert rss_end < rss_start * (1 + RSS_GROWTH_LIMIT), (rss_start, rss_end)
    assert fds_end - fds_start <= FD_GROWTH_LIMIT, (fds_start, fds_end)
