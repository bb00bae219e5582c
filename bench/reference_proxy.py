"""The bare reference proxy of SPEC section 13: uvicorn + one shared aiohttp session, nothing else.

Run: python -m bench.reference_proxy --port 9301 --upstream http://127.0.0.1:9300
"""

from __future__ import annotations

import argparse

import aiohttp
import uvicorn

_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"host", b"content-length"}


def build(upstream: str):
    state: dict = {}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["session"] = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=256), auto_decompress=False
                    )
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await state["session"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k not in _HOP]
        url = (
            upstream
            + scope["raw_path"].decode()
            + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        )
        async with state["session"].request(
            scope["method"], url, headers=headers, data=body or None
        ) as response:
            payload = await response.read()
            out = [(k.lower(), v) for k, v in response.raw_headers if k.lower() not in _HOP]
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    from gateway_project.serve import bind

    config = uvicorn.Config(
        build(args.upstream),
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[bind("127.0.0.1", args.port)])


if __name__ == "__main__":
    main()
