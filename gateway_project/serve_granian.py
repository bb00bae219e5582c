"""Serve the gateway with granian (ASGI), the option `GATEWAY_SERVER=granian` of `serve.py`.

What carries over from the uvicorn server (`gateway_project/serve.py`), and how:
- the request-header deadline: granian's HTTP/1 `header_read_timeout` (REQUEST_HEADER_TIMEOUT);
  granian closes the connection without a 408 status line;
- the SSE drain on SIGTERM/SIGINT: the worker's signal handler closes the data plane's SSE
  streams before granian stops, so shutdown does not wait on them;
- TLS termination (GATEWAY_TLS_CERT_FILE/KEY_FILE, the key in PKCS#8 PEM), the minimum
  version (GATEWAY_TLS_MIN_VERSION), and HTTP/2 by ALPN next to HTTP/1.1 over TLS.
- the body backstop: `BodyDeadline` wraps the application (`gateway_project.asgi_granian`),
  so an announced body that stops arriving gets the 408 REQUEST_TIMEOUT problem on Django's
  paths too, a moment after the data plane would answer its own.
What does not: the 408 status line for slow headers (granian closes the connection), and
the write coalescing of `proxy/write_coalescing.py` (granian's own I/O is in Rust).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

__all__ = ["APP", "BodyDeadline", "granian_config_error", "run_granian"]

APP = "gateway_project.asgi_granian:application"

_PKCS8_HEAD = b"-----BEGIN PRIVATE KEY-----"
_TLS_PROTOCOLS = {"TLSv1.2": "tls1.2", "TLSv1.3": "tls1.3"}


def _with_drain(granian_loop_signals):
    """granian's worker signal setup, with the data plane's SSE drain run before its event."""

    def loop_signals(loop):
        event = granian_loop_signals(loop)

        def on_signal(signum, frame) -> None:
            from gateway_project.serve import drain_data_plane

            drain_data_plane()
            event.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig, None)
        return event

    return loop_signals


def _announces_body(headers) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False


class BodyDeadline:
    """The server's body backstop as ASGI: while an announced body is incomplete, a receive that
    waits longer than REQUEST_BODY_TIMEOUT plus a grace ends the request with a 408 problem
    (`Connection: close`) and tells the application the client is gone. Time the application
    spends before asking for more does not count: the clock runs only inside `receive`."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not _announces_body(scope["headers"]):
            return await self.app(scope, receive, send)
        from django.conf import settings

        from gateway_project.serve import BODY_BACKSTOP_GRACE

        delay = settings.REQUEST_BODY_TIMEOUT + BODY_BACKSTOP_GRACE
        state = {"pending": True, "started": False, "cut": False}

        async def timed_receive():
            if not state["pending"]:
                return await receive()
            try:
                async with asyncio.timeout(delay):
                    message = await receive()
            except TimeoutError:
                state["pending"] = False
                if not state["started"]:
                    state["cut"] = True
                    await _send_body_timeout(send, scope["path"])
                return {"type": "http.disconnect"}
            state["pending"] = message["type"] == "http.request" and message.get("more_body", False)
            return message

        async def tracked_send(message) -> None:
            if state["cut"]:
                return  # the 408 went out; the application's late answer is dropped
            state["started"] = True
            await send(message)

        await self.app(scope, timed_receive, tracked_send)


async def _send_body_timeout(send, path: str) -> None:
    from gateway_project.core.problems import PROBLEM_CONTENT_TYPE, problem_bytes
    from gateway_project.core.request_id import new_request_id
    from gateway_project.serve import BODY_TIMEOUT_DETAIL

    request_id = new_request_id()
    body = problem_bytes("REQUEST_TIMEOUT", BODY_TIMEOUT_DETAIL, path, request_id)
    headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 408, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def granian_config_error(args) -> str | None:
    """Why granian cannot start with these options (None: it can), said before anything starts."""
    try:
        import granian  # noqa: F401
    except ImportError:
        return "GATEWAY_SERVER=granian needs granian: pip install '.[granian]'"
    if args.tls_key_file and _PKCS8_HEAD not in Path(args.tls_key_file).read_bytes():
        return (
            "GATEWAY_SERVER=granian reads only PKCS#8 keys (BEGIN PRIVATE KEY); convert with "
            "openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8"
        )
    return None


def run_granian(args) -> None:
    """Run the gateway under granian with the options `serve.py` parsed; returns when it stops."""
    import granian._signals
    from django.conf import settings
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops, SSLProtocols
    from granian.http import HTTP1Settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    # Workers are forked from this process: they inherit the wrapped setup.
    granian._signals.set_loop_signals = _with_drain(granian._signals.set_loop_signals)
    tls = bool(args.tls_cert_file)
    Granian(
        APP,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        loop=Loops.uvloop,
        http=HTTPModes.auto if tls else HTTPModes.http1,
        websockets=True,
        backlog=2048,
        http1_settings=HTTP1Settings(header_read_timeout=int(settings.REQUEST_HEADER_TIMEOUT * 1000)),
        log_level=args.log_level,
        log_access=False,  # the data plane writes its own structured access log
        ssl_cert=Path(args.tls_cert_file) if tls else None,
        ssl_key=Path(args.tls_key_file) if tls else None,
        ssl_protocol_min=SSLProtocols(_TLS_PROTOCOLS[args.tls_min_version]),
        workers_kill_timeout=max(1, int(args.graceful_timeout)),
    ).serve()
