"""Serve the gateway with granian (ASGI), the option `GATEWAY_SERVER=granian` of `serve.py`.

What carries over from the uvicorn server (`gateway_project/serve.py`), and how:
- the request-header deadline: granian's HTTP/1 `header_read_timeout` (REQUEST_HEADER_TIMEOUT);
  granian closes the connection without a 408 status line;
- the SSE drain on SIGTERM/SIGINT: the worker's signal handler closes the data plane's SSE
  streams before granian stops, so shutdown does not wait on them;
- TLS termination (GATEWAY_TLS_CERT_FILE/KEY_FILE, the key in PKCS#8 PEM), the minimum
  version (GATEWAY_TLS_MIN_VERSION), and HTTP/2 by ALPN next to HTTP/1.1 over TLS.
What does not: the server's body backstop for Django views (the data plane still answers a
stalled body to a service path with its own 408 at REQUEST_BODY_TIMEOUT), and the write
coalescing of `proxy/write_coalescing.py` (granian's own I/O is in Rust).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from granian._signals import set_loop_signals as _granian_loop_signals

__all__ = ["run_granian"]

_TLS_PROTOCOLS = {"TLSv1.2": "tls1.2", "TLSv1.3": "tls1.3"}


def _draining_loop_signals(loop):
    """granian's worker signal event, with the data plane's SSE drain run first."""
    event = _granian_loop_signals(loop)

    def on_signal(signum, frame) -> None:
        from gateway_project.serve import drain_data_plane

        drain_data_plane()
        event.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig, None)
    return event


def run_granian(app: str, args) -> None:
    """Run `app` under granian with the options `serve.py` parsed; returns when it stops."""
    import granian._signals
    from django.conf import settings
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops, SSLProtocols
    from granian.http import HTTP1Settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    granian._signals.set_loop_signals = _draining_loop_signals  # workers are forked: they inherit it
    tls = bool(args.tls_cert_file)
    Granian(
        app,
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
