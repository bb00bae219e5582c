"""GET /api/v1/alerts/stream: tenant-isolated SSE as a plain ASGI app (SPEC section 9).

Plain ASGI because Channels' AsyncHttpConsumer cannot see a disconnect while it streams
(channels#1249): here a receive task notices `http.disconnect` at once and the
subscription is dropped. Replay with Last-Event-ID comes from the durable log; live
events from the instance's hub; nothing is buffered between them and the socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qs

from django.conf import settings

from alerts.hub import DISCONNECTED
from alerts.log import event_order, read_after
from proxy.auth import AUTH_FAILED, identity_from_api_key
from proxy.problems import problem_bytes
from proxy.request_id import accept_request_id

__all__ = ["AlertStreamApp"]

logger = logging.getLogger("gateway.alerts")

# A token in the query string can end up in logs and history: only short-lived ones.
QUERY_TOKEN_MAX_REMAINING_SECONDS = 3600
_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),  # tells nginx-style proxies in front not to buffer
    (b"x-content-type-options", b"nosniff"),
]


class AlertStreamApp:
    def __init__(self, runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope, receive, send) -> None:
        headers = dict(scope["headers"])
        request_id = accept_request_id(headers.get(b"x-request-id"))
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope["method"] != "GET":
            return await self._problem(
                send,
                scope,
                request_id,
                "METHOD_NOT_ALLOWED",
                "The alert stream is read with GET.",
                [(b"allow", b"GET")],
            )
        identity = self._authenticate(headers, query)
        if identity is None:
            return await self._problem(
                send,
                scope,
                request_id,
                "AUTH_ERROR",
                AUTH_FAILED,
                [(b"www-authenticate", b'Bearer realm="gateway"')],
            )
        if not identity.tenant:
            return await self._problem(
                send,
                scope,
                request_id,
                "FORBIDDEN",
                "Alert streams belong to a tenant; these credentials have none.",
            )
        hub = self.runtime.alert_hub
        if hub.count(identity.tenant) >= settings.SSE_MAX_CONNECTIONS_PER_TENANT:
            return await self._problem(
                send,
                scope,
                request_id,
                "TOO_MANY_CONNECTIONS",
                "The tenant holds the maximum number of alert streams.",
            )
        last_id = (
            headers.get(b"last-event-id", b"").decode("latin-1").strip()
            or (query.get("last_event_id") or [""])[0]
        )
        await self._stream(scope, receive, send, identity.tenant, last_id, headers, request_id)

    def _authenticate(self, headers: dict, query: dict):
        runtime = self.runtime
        authorization = headers.get(b"authorization")
        token = None
        from_query = False
        if authorization is not None:
            scheme, _, value = authorization.partition(b" ")
            token = value.strip().decode("latin-1") if scheme.lower() == b"bearer" else None
        elif (api_key := headers.get(b"x-api-key")) is not None:
            return identity_from_api_key(runtime.snapshot, api_key)
        elif query.get("access_token"):
            token, from_query = query["access_token"][0], True
        if not token:
            return None
        identity = runtime.token_verifier.verify(token)
        if identity is None or identity.jti in runtime.revoked_tokens:
            return None
        if from_query and identity.expires_at - time.time() > QUERY_TOKEN_MAX_REMAINING_SECONDS:
            return None
        return identity

    async def _stream(self, scope, receive, send, tenant, last_id, headers, request_id) -> None:
        runtime = self.runtime
        hub = runtime.alert_hub
        subscription = hub.subscribe(tenant)  # first, so nothing published during replay is missed
        runtime.metrics.sse_connections.inc()
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive, subscription))
        try:
            response_headers = list(_STREAM_HEADERS)
            response_headers += runtime.cors.headers_for(headers.get(b"origin"))
            response_headers.append((b"x-request-id", request_id.encode()))
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

    async def _problem(self, send, scope, request_id, code, detail, extra_headers=()) -> None:
        from proxy.problems import PROBLEM_TYPES

        body = problem_bytes(code, detail, scope["path"], request_id)
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            *extra_headers,
        ]
        await send(
            {
                "type": "http.response.start",
                "status": PROBLEM_TYPES[code].status,
                "headers": headers,
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def _wait_for_disconnect(receive, subscription) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    subscription.offer(DISCONNECTED)
