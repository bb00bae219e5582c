"""Fixtures for alerts: a live gateway, tenants with users, and an SSE reader."""

from __future__ import annotations

import json
import queue
import threading
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from tests.live import GatewayServer


@pytest.fixture
def live_gateway(transactional_db, settings):
    settings.RATE_LIMIT_DEFAULT = ""
    server = GatewayServer().start()
    yield server
    server.stop()


@pytest.fixture
def tenant_user(transactional_db):
    """(tenant, user, access token) for a fresh tenant; the user may publish alerts."""
    from tenancy.models import Subscription, Tenant, User
    from tenancy.tokens import tokens_for_user

    def make(slug: str, role: str = "staff", **user_fields):
        tenant = Tenant.objects.create(name=slug.title(), slug=slug)
        Subscription.objects.create(tenant=tenant, current_period_end=timezone.now() + timedelta(days=30))
        user = User.objects.create_user(
            f"ops@{slug}.example",
            email=f"ops@{slug}.example",
            password="pw-123456789",
            tenant=tenant,
            role=role,
            **user_fields,
        )
        return tenant, user, tokens_for_user(user)["access"]

    return make


class SseReader:
    """Reads an SSE stream in a thread; events land in a queue as dicts with id/event/data."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: queue.Queue = queue.Queue()
        self.status: int | None = None
        self.headers = None
        self.comments: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("SSE stream did not open")

    def _run(self, url, headers):
        try:
            self._read(url, headers)
        except httpx.HTTPError:
            pass  # the gateway closed the stream (shutdown, teardown): the events read stay
        finally:
            self._ready.set()

    def _read(self, url, headers):
        with (
            httpx.Client(timeout=httpx.Timeout(5, read=30)) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            self.status = response.status_code
            self.headers = response.headers
            if response.status_code != 200:
                self.body = response.read()
                self._ready.set()
                return
            event: dict = {}
            for line in response.iter_lines():
                if line.startswith(":"):
                    self.comments.append(line)
                    if line.startswith(": connected"):
                        self._ready.set()
                elif line.startswith("retry:"):
                    self.retry = int(line[6:])
                elif line == "":
                    if event:
                        self.events.put(event)
                        event = {}
                else:
                    field, _, value = line.partition(": ")
                    event[field] = json.loads(value) if field == "data" else value
                if self._stop.is_set():
                    return

    def next(self, timeout: float = 5) -> dict:
        return self.events.get(timeout=timeout)

    def drain(self, wait: float = 0.5) -> list[dict]:
        items = []
        try:
            while True:
                items.append(self.events.get(timeout=wait))
        except queue.Empty:
            return items

    def close(self) -> None:
        self._stop.set()


@pytest.fixture
def sse():
    readers = []

    def open_stream(url: str, token: str | None = None, **headers) -> SseReader:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        reader = SseReader(url, {k.replace("_", "-"): v for k, v in headers.items()})
        readers.append(reader)
        return reader

    yield open_stream
    for reader in readers:
        reader.close()


def publish(gateway_url: str, token: str, message: str, severity: str = "warning", **extra) -> dict:
    response = httpx.post(
        f"{gateway_url}/api/v1/alerts",
        json={"severity": severity, "message": message, **extra},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    return response.json()
