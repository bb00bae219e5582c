"""Top-level dispatch of ASGI connections (filled by the data-plane issue)."""


def http_router(django_application):
    return django_application


def websocket_router():
    async def refuse(scope, receive, send):
        await send({"type": "websocket.close", "code": 1008})

    return refuse


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
