"""The one ASGI application: data plane, SSE and WebSocket proxy in front, Django behind.

Service paths never enter Django's request handler (SPEC section 3): `gateway_project.routing`
sends them to the plain-ASGI data plane, which makes no database query per request.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()


def alert_tasks(hub) -> list:
    """The SSE keep-alive and, with Redis, the relay of other instances' alerts into `hub`."""
    from django.conf import settings

    from alerts.fanout import relay_redis_alerts

    def keepalive(runtime):
        return hub.run_keepalive(settings.SSE_KEEPALIVE_SECONDS)

    def fanout(runtime):
        if runtime.redis is None:
            return None
        return relay_redis_alerts(hub, runtime.redis_pubsub_client(), runtime.watcher.run_in_db_thread)

    return [("sse-keepalive", keepalive), ("alert-fanout", fanout)]


def full_runtime():
    """A gateway with its registry database: every door, the SSE streams and their hub."""
    from alerts.hub import AlertHub
    from alerts.log import event_order
    from proxy.runtime import Runtime
    from usage.background import usage_tasks

    hub = AlertHub(event_order)
    return Runtime(alert_hub=hub, background=[*alert_tasks(hub), *usage_tasks()])


def data_plane_runtime():
    """A data plane (SPEC section 18): its config from GATEWAY_CONFIG_SOURCE, no database, so
    no alert stream (alerts are stored on the control plane)."""
    from declarative.data_plane.watcher import data_plane_watcher
    from proxy.runtime import Runtime

    return Runtime(watcher_factory=data_plane_watcher)


def build_application():
    """A complete gateway instance (its own data-plane runtime); tests build several.

    The wiring creates the alert hub and hands it to the runtime, so `proxy/` never imports
    `alerts/` (SPEC section 17).
    """
    from django.conf import settings

    from gateway_project.routing import http_router, websocket_router

    runtime = data_plane_runtime() if settings.DATA_PLANE_ONLY else full_runtime()
    application = ProtocolTypeRouter(
        {
            "http": http_router(django_application, runtime),
            "websocket": websocket_router(runtime),
            "lifespan": runtime.lifespan,
        }
    )
    application.runtime = runtime
    return application


application = build_application()
