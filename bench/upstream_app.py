"""A minimal upstream for when nginx is not installed: uvicorn answering a small JSON body."""

from __future__ import annotations

import argparse
import json

import uvicorn

BODY = b'{"ok":true,"service":"bench","items":[1,2,3]}'
# What `python -m bench.plugins` validates against (request-validator on /items?limit=N).
OPENAPI = json.dumps(
    {
        "openapi": "3.0.3",
        "info": {"title": "Bench", "version": "1"},
        "paths": {
            "/items": {
                "get": {
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}}
                    ],
                    "responses": {"200": {"description": "Items"}},
                }
            }
        },
    }
).encode()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = OPENAPI if scope["path"] == "/openapi.json" else BODY
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    from gateway_project.serve import bind

    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", lifespan="off", access_log=False, log_level="warning"
    )
    uvicorn.Server(config).run(sockets=[bind("127.0.0.1", args.port)])


if __name__ == "__main__":
    main()
