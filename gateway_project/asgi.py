"""The one ASGI application: data plane, SSE and WebSocket proxy in front, Django behind.

Service paths never enter Django's request handler (SPEC section 3): `proxy.routing`
sends them to the plain-ASGI data plane, which makes no database query per request.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()

from proxy.routing import http_router, lifespan, websocket_router  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": http_router(django_application),
        "websocket": websocket_router(),
        "lifespan": lifespan,
    }
)
