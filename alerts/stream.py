"""GET /api/v1/alerts/stream: tenant-isolated SSE as a plain ASGI app (SPEC section 9).

Plain ASGI because Channels' AsyncHttpConsumer cannot see a disconnect while it streams
(channels#1249): here a receive task notices `http.disconnect` at once and the
subscription is dropped. Replay with Last-Event-ID comes from the durable log; live
events from the instance's hub; nothing is buffered between them and the socket.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

from django.conf import settings

from alerts.hub import DISCONNECTED
from alerts.log import event_order, read_after
from gateway_project.core.problems import problem_bytes
from proxy.exchange import Exchange, Rejection
from proxy.policy import ALERTS_ENDPOINT, POLICY, assign_request_id, run_steps

__all__ = ["AlertStreamApp"]

logger = logging.getLogger("gateway.alerts")

SSE_PATH = "/api/v1/alerts/stream"
_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),  # tells nginx-style proxies in front not to buffer
    (b"x-content-type-options", b"nosniff"),
]


class AlertStreamApp:
    """The SSE door: the same policy chain as every other door, then the tenant's stream."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope, receive, send) -> None:
        exchange = Exchange(self.runtime, scope, receive, send, door="sse")
        try:
            await self._admit(exchange)
        except Rejection as rejection:
            await self.runtime.respond.problem(exchange, rejection)
            self.runtime.respond.finish(exchange)
            return
        query = parse_qs(exchange.query.decode("latin-1"))
        last_id = (
            exchange.header_index.get(b"last-event-id", b"").decode("latin-1").strip()
            or (query.get("last_event_id") or [""])[0]
        )
        exchange.status = 200
        try:
            await self._stream(exchange, last_id)
        finally:
            self.runtime.respond.finish(exchange)

    async def _admit(self, exchange: Exchange) -> None:
        assign_request_id(exchange)
        exchange.service, exchange.prefix, exchange.path = ALERTS_ENDPOINT, SSE_PATH, SSE_PATH
        if exchange.method != "GET":
            raise Rejection("METHOD_NOT_ALLOWED", "The alert stream is read with GET.", [(b"allow", b"GET")])
        await run_steps(exchange, POLICY)
        tenant = exchange.identity.tenant
        if not tenant:
            raise Rejection("FORBIDDEN", "Alert streams belong to a tenant; these credentials have none.")
        if self.runtime.alert_hub.count(tenant) >= settings.SSE_MAX_CONNECTIONS_PER_TENANT:
            raise Rejection("TOO_MANY_CONNECTIONS", "The tenant holds the maximum number of alert streams.")

    async def _stream(self, exchange: Exchange, last_id: str) -> None:
        runtime = self.runtime
        hub = runtime.alert_hub
        send = exchange.send
        tenant = exchange.identity.tenant
        subscription = hub.subscribe(tenant)  # first, so nothing published during replay is missed
        runtime.metrics.sse_connections.inc()
        watcher = asyncio.ensure_future(_wait_for_disconnect(exchange.receive, subscription))
        runtime.live.hold(exchange, lambda rejection: _end_with(subscription, exchange, rejection))
        try:
            response_headers = list(_STREAM_HEADERS)
            response_headers += runtime.cors.headers_for(exchange.header_index.get(b"origin"))
            response_headers.append((b"x-request-id", exchange.request_id.encode()))
            response_headers += exchange.response_headers
            await send({"type": "http.response.start", "status": 200, "headers": response_headers})
            await send(
                {
                    "type": "http.response.body",
                    "more_body": True,
                    "body": f"retry: {settings.SSE_RETRY_MS}\n: connected\n\n".encode(),
                }
            )
            replayed = await self._replay(send, tenant, last_id)
            await self._relay(send, subscription, replayed)
            # Ended by the server (shutdown, slow reader): close the chunked body properly so
            # the client sees a finished stream and reconnects with Last-Event-ID.
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            runtime.live.release(exchange)
            watcher.cancel()
            hub.unsubscribe(subscription)
            runtime.metrics.sse_connections.dec()

    async def _replay(self, send, tenant: str, last_id: str) -> int:
        """Everything after Last-Event-ID from the durable log; returns the last id sent."""
        if not last_id:
            return -1
        from alerts.hub import render_event

        events = await self.runtime.watcher.run_in_db_thread(read_after, tenant, last_id)
        last = event_order(last_id)
        for event_id, event in events:
            await send(
                {
                    "type": "http.response.body",
                    "body": render_event(event_id, event),
                    "more_body": True,
                }
            )
            last = event_order(event_id)
        return last

    async def _relay(self, send, subscription, replayed: int) -> None:
        while True:
            item = await subscription.queue.get()
            if item is DISCONNECTED:
                return
            order, frame = item
            if order is not None and order <= replayed:
                continue  # already sent during replay
            await send({"type": "http.response.body", "body": frame, "more_body": True})


async def _wait_for_disconnect(receive, subscription) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    subscription.offer(DISCONNECTED)


def _end_with(subscription, exchange: Exchange, rejection: Rejection) -> None:
    """The registry now refuses this stream: an `event: close` carrying the problem, then the end."""
    problem = problem_bytes(rejection.code, rejection.detail, SSE_PATH, exchange.request_id).decode()
    subscription.offer((None, f"event: close\ndata: {problem}\n\n".encode()))
    subscription.offer(DISCONNECTED)
