"""The one ASGI application: data plane, SSE and WebSocket proxy in front, Django behind.

Service paths never enter Django's request handler (SPEC section 3): `proxy.routing`
sends them to the plain-ASGI data plane, which makes no database query per request.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()


def build_application():
    """A complete gateway instance (its own data-plane runtime); tests build several."""
    from proxy.routing import http_router, websocket_router
    from proxy.runtime import Runtime

    runtime = Runtime()
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
