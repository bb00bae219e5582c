"""WebSocket proxy for services with WebSockets enabled (SPEC section 9), e.g. /api/v1/training/ws.

The upgrade is authenticated (Bearer header, or `?access_token=` for browsers, which cannot
set headers on a WebSocket) and its Origin checked against the allowlist *before* it is
accepted; refused upgrades never see a 101. Frames are relayed both ways, text and binary;
close codes cross in both directions; an upstream failure closes the client with 1011.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs, urlencode

from proxy.auth import identity_from_api_key
from proxy.exchange import Rejection
from proxy.hygiene import normalize_path

__all__ = ["WebSocketProxy"]

logger = logging.getLogger("gateway.websocket")

INTERNAL_ERROR = 1011
POLICY_VIOLATION = 1008
_CLOSE_FRAME_TYPES = ("close", "closing", "closed")


class WebSocketProxy:
    def __init__(self, runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope, receive, send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        headers = dict(scope["headers"])
        refusal, service, identity = self._admit(scope, headers)
        if refusal is not None:
            logger.info("websocket refused: %s", refusal, extra={"path": scope["path"]})
            await send({"type": "websocket.close", "code": POLICY_VIOLATION})  # HTTP 403, no 101
            return
        target, breaker = self.runtime.balancer.choose(service, bool(identity and identity.demo_session))
        upstream = await self._connect_upstream(scope, headers, service, target, identity)
        if upstream is None:
            breaker.record_failure()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": INTERNAL_ERROR})
            return
        breaker.record_success()
        subprotocol = upstream.protocol
        await send({"type": "websocket.accept", **({"subprotocol": subprotocol} if subprotocol else {})})
        await self._relay(receive, send, upstream)

    def _admit(self, scope, headers):
        """(reason for refusal or None, service, identity) — everything decided before accepting."""
        runtime = self.runtime
        try:
            path, _ = normalize_path(scope.get("raw_path") or scope["path"].encode())
        except Rejection:
            return "bad path", None, None
        service = runtime.snapshot.match(path)
        if service is None or not service.websocket_enabled or not service.enabled:
            return "no websocket service here", None, None
        origin = headers.get(b"origin")
        if origin is not None and origin not in runtime.cors.origins:
            return "origin not allowed", None, None
        identity = None
        if service.auth_required and not service.is_public(path):
            identity = self._identity(scope, headers)
            if identity is None:
                return "not authenticated", None, None
            roles, scopes = service.required("GET")
            from proxy.auth import role_satisfies

            if (roles and not role_satisfies(identity.roles, roles)) or (
                scopes and not scopes <= identity.scopes
            ):
                return "forbidden", None, None
            tenant = runtime.snapshot.tenants.get(identity.tenant) if identity.tenant else None
            if identity.tenant and tenant is None:
                return "unknown tenant", None, None
        scope["gateway_path"] = path
        return None, service, identity

    def _identity(self, scope, headers):
        runtime = self.runtime
        authorization = headers.get(b"authorization", b"")
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and token:
            raw = token.strip().decode("latin-1")
        elif (api_key := headers.get(b"x-api-key")) is not None:
            return identity_from_api_key(runtime.snapshot, api_key)
        else:
            raw = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("access_token") or [""])[0]
        if not raw:
            return None
        identity = runtime.token_verifier.verify(raw)
        if identity is None or identity.jti in runtime.revoked_tokens:
            return None
        return identity

    async def _connect_upstream(self, scope, headers, service, target, identity):
        import aiohttp

        query = {
            k: v
            for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()
            if k != "access_token"
        }
        url = target.url.replace("http", "ws", 1) + service.upstream_path_for(scope["gateway_path"])
        if query:
            url += "?" + urlencode(query, doseq=True)
        forward = {"X-Forwarded-For": scope["client"][0] if scope.get("client") else ""}
        if identity is not None:
            forward.update({"X-User-ID": identity.subject, "X-User-Roles": ",".join(sorted(identity.roles))})
            if identity.tenant:
                forward["X-Tenant-ID"] = identity.tenant
            if identity.demo_session:
                forward.update({"X-Demo-Mode": "true", "X-Demo-Session": identity.demo_session})
        protocols = [
            p.strip()
            for p in headers.get(b"sec-websocket-protocol", b"").decode("latin-1").split(",")
            if p.strip()
        ]
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=service.connect_timeout))
        try:
            upstream = await session.ws_connect(
                url,
                headers=forward,
                protocols=protocols,
                autoclose=False,
                autoping=True,
                max_msg_size=0,
            )
        except Exception as exc:
            await session.close()
            logger.warning("websocket upstream unreachable: %s", exc, extra={"service": service.slug})
            return None
        upstream._gateway_session = session
        return upstream

    async def _relay(self, receive, send, upstream) -> None:
        import aiohttp

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
            code = upstream.close_code or 1000
            await send({"type": "websocket.close", "code": code})

        tasks = [
            asyncio.ensure_future(client_to_upstream()),
            asyncio.ensure_future(upstream_to_client()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()
            await upstream._gateway_session.close()
