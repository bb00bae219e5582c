"""WebSocket proxy for services with WebSockets enabled (SPEC sections 9 and 16), e.g.
/api/v1/training/ws.

The upgrade runs the same policy chain as an HTTP request (`proxy.policy.POLICY`) before
it is accepted: a refusal is the HTTP problem response itself, never a 101 (the ASGI
`websocket.http.response` extension; servers without it get a 1008 close). An upgrade
counts against the service's rate policies and needs what a write needs, since the
client's frames go upstream. The upstream handshake carries the same forwarded headers as
HTTP. Frames are relayed both ways, close codes cross in both directions, and a
connection the registry later refuses is closed with 4401/4402/4403/1001.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qsl, urlencode

from gateway_project.core.outbound import GuardedConnector
from proxy.exchange import Exchange, Rejection
from proxy.forward import upstream_headers
from proxy.live import CLOSE_CODES
from proxy.pipeline import check_hygiene, choose_target, match_route
from proxy.policy import POLICY, assign_request_id, run_steps

__all__ = ["WebSocketProxy"]

logger = logging.getLogger("gateway.websocket")

INTERNAL_ERROR = 1011
POLICY_VIOLATION = 1008
_HTTP_RESPONSE_EXTENSION = "websocket.http.response"
# The upstream handshake is aiohttp's own: the client's handshake headers do not cross.
_HANDSHAKE_HEADERS = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
)


def check_origin(exchange: Exchange) -> None:
    """A browser's upgrade from an origin outside CORS_ORIGINS is refused (SPEC section 14)."""
    origin = exchange.header_index.get(b"origin")
    if origin is not None and origin not in exchange.runtime.cors.origins:
        raise Rejection("FORBIDDEN", "WebSocket upgrades from this origin are not allowed.")


def require_websocket(exchange: Exchange) -> None:
    if not exchange.service.websocket_enabled:
        raise Rejection("NOT_FOUND", f"The {exchange.service.slug} service takes no WebSockets here.")


UPGRADE_STEPS = (
    assign_request_id,
    check_origin,
    check_hygiene,
    match_route,
    require_websocket,
    *POLICY,
    choose_target,
)


class WebSocketProxy:
    def __init__(self, runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope, receive, send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        exchange = Exchange(self.runtime, scope, receive, send, door="websocket")
        try:
            await run_steps(exchange, UPGRADE_STEPS)
        except Rejection as rejection:
            return await self._refuse(exchange, rejection)
        target, breaker = exchange.target
        upstream = await self._connect_upstream(exchange, target)
        if upstream is None:
            breaker.record_failure()
            return await self._refuse(
                exchange, Rejection("BAD_GATEWAY", "The upstream refused the WebSocket.")
            )
        breaker.record_success()
        accept = {"type": "websocket.accept", "headers": self._accept_headers(exchange)}
        if upstream.protocol:
            accept["subprotocol"] = upstream.protocol
        await send(accept)
        exchange.status = 101
        try:
            await self._relay(exchange, upstream)
        finally:
            self.runtime.respond.finish(exchange)

    async def _refuse(self, exchange: Exchange, rejection: Rejection) -> None:
        logger.info("websocket refused: %s", rejection.code, extra={"path": exchange.scope["path"]})
        respond = self.runtime.respond
        if _HTTP_RESPONSE_EXTENSION in exchange.scope.get("extensions", {}):
            exchange.send = _as_websocket_http_response(exchange.send)
            await respond.problem(exchange, rejection)
        else:  # e.g. daphne: no denial response, only a close before the handshake (HTTP 403)
            exchange.status = 403
            await exchange.send({"type": "websocket.close", "code": POLICY_VIOLATION})
        respond.finish(exchange)

    @staticmethod
    def _accept_headers(exchange: Exchange) -> list[tuple[bytes, bytes]]:
        return [(b"x-request-id", exchange.request_id.encode()), *exchange.response_headers]

    async def _connect_upstream(self, exchange: Exchange, target):
        import aiohttp

        service = exchange.service
        url = target.url.replace("http", "ws", 1) + service.upstream_path_for(exchange.path, exchange.prefix)
        query = [(k, v) for k, v in parse_qsl(exchange.query.decode("latin-1")) if k != "access_token"]
        if query:
            url += "?" + urlencode(query)
        headers = [
            (k, v) for k, v in upstream_headers(exchange, target) if k.lower() not in _HANDSHAKE_HEADERS
        ]
        offered = exchange.header_index.get(b"sec-websocket-protocol", b"").decode("latin-1")
        protocols = [p.strip() for p in offered.split(",") if p.strip()]
        session = aiohttp.ClientSession(
            connector=GuardedConnector(), timeout=aiohttp.ClientTimeout(sock_connect=service.connect_timeout)
        )
        try:
            upstream = await session.ws_connect(
                url,
                headers=headers,
                protocols=protocols,
                autoclose=False,
                autoping=True,
                max_msg_size=0,
                ssl=True if target.tls is None else target.tls,
            )
        except Exception as exc:
            await session.close()
            logger.warning("websocket upstream unreachable: %s", exc, extra={"service": service.slug})
            return None
        upstream._gateway_session = session
        return upstream

    async def _relay(self, exchange: Exchange, upstream) -> None:
        import aiohttp

        receive, send = exchange.receive, exchange.send
        refused: asyncio.Future = asyncio.get_running_loop().create_future()

        async def client_to_upstream():
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close(code=message.get("code", 1000))
                    return
                if message.get("text") is not None:
                    await upstream.send_str(message["text"])
                elif message.get("bytes") is not None:
                    await upstream.send_bytes(message["bytes"])

        async def upstream_to_client():
            async for frame in upstream:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    await send({"type": "websocket.send", "text": frame.data})
                elif frame.type == aiohttp.WSMsgType.BINARY:
                    await send({"type": "websocket.send", "bytes": frame.data})
                elif frame.type == aiohttp.WSMsgType.CLOSE:
                    break
                elif frame.type == aiohttp.WSMsgType.ERROR:
                    await send({"type": "websocket.close", "code": INTERNAL_ERROR})
                    return
            await send({"type": "websocket.close", "code": upstream.close_code or 1000})

        def end(rejection: Rejection) -> None:
            if not refused.done():
                refused.set_result(rejection)

        live = self.runtime.live
        live.hold(exchange, end)
        tasks = [asyncio.ensure_future(client_to_upstream()), asyncio.ensure_future(upstream_to_client())]
        try:
            await asyncio.wait([*tasks, refused], return_when=asyncio.FIRST_COMPLETED)
            if refused.done():
                code = CLOSE_CODES.get(refused.result().code, POLICY_VIOLATION)
                await send({"type": "websocket.close", "code": code, "reason": refused.result().code})
        finally:
            live.release(exchange)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()
            await upstream._gateway_session.close()


def _as_websocket_http_response(send):
    """Responder speaks http.response.*; a refused upgrade answers through the extension."""

    async def translated(message):
        await send({**message, "type": "websocket." + message["type"]})

    return translated
