"""Top-level dispatch of ASGI connections (SPEC section 3).

Paths the gateway serves itself go to Django (those that take a client token through the
data plane's policy chain first); the SSE stream to its plain ASGI app; every
other `/api/...` path to the data plane, which answers 404 for unregistered prefixes
rather than ever falling through to a default upstream.
"""

from __future__ import annotations

from proxy.pipeline import ProxyApp
from proxy.policy import ENDPOINTS, EndpointDoor
from registry.constants import RESERVED_PREFIXES

__all__ = ["SSE_PATH", "http_router", "is_gateway_path", "websocket_router"]

SSE_PATH = "/api/v1/alerts/stream"
_GATEWAY_PREFIXES = tuple(p + "/" for p in RESERVED_PREFIXES)


def is_gateway_path(path: str) -> bool:
    return path.startswith(_GATEWAY_PREFIXES) or path in RESERVED_PREFIXES


def http_router(django_application, runtime):
    proxy = ProxyApp(runtime)
    endpoint_door = EndpointDoor(runtime, django_application)
    sse = None

    async def route(scope, receive, send):
        nonlocal sse
        path = scope["path"]
        if path == SSE_PATH and runtime.alert_hub is not None:  # none on a data plane
            if sse is None:
                from alerts.stream import AlertStreamApp

                sse = AlertStreamApp(runtime)
            await runtime.ensure_started()
            return await sse(scope, receive, send)
        if path.startswith("/api/") and not is_gateway_path(path):
            await runtime.ensure_started()
            return await proxy(scope, receive, send)
        if path in ENDPOINTS:  # gateway endpoints that take a client token: the same policy chain
            await runtime.ensure_started()
            return await endpoint_door(scope, receive, send)
        return await django_application(scope, receive, send)

    return route


def websocket_router(runtime):
    async def route(scope, receive, send):
        from proxy.websocket import WebSocketProxy

        await runtime.ensure_started()
        await WebSocketProxy(runtime)(scope, receive, send)

    return route
