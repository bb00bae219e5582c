"""Serve the gateway with uvicorn (uvloop + httptools), one or several worker processes.

Why not plain `uvicorn --workers N`: uvicorn binds its shared socket without
IPPROTO_TCP, so asyncio does not set TCP_NODELAY on accepted connections and Nagle plus
delayed ACKs add ~40 ms to responses written in two parts. Here the socket is created
explicitly as TCP. Slow clients are cut at the protocol: headers (REQUEST_HEADER_TIMEOUT)
and, behind the data plane's own 408, any announced body that stops arriving
(REQUEST_BODY_TIMEOUT, so Django's views are covered too). On SIGTERM/SIGINT the data
plane closes its SSE streams first, so the server does not wait on them forever; in-flight
requests still complete. With GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE it terminates
TLS itself (GATEWAY_TLS_MIN_VERSION: TLSv1.2 or TLSv1.3); HTTP/2 needs a server that
speaks it (uvicorn does not), so ALPN offers http/1.1.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import multiprocess

from gateway_project.core.problems import PROBLEM_CONTENT_TYPE, problem_bytes
from gateway_project.core.request_id import new_request_id
from gateway_project.core.tls import TLS_MIN_VERSIONS, server_ssl_context
from proxy.write_coalescing import CoalescingTransport

__all__ = ["GatewayServer", "main"]

APP = "gateway_project.asgi:application"
SERVERS = ("uvicorn", "granian")


_REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 25\r\n"
    b"Connection: close\r\n\r\nRequest headers too slow."
)
# The data plane answers a stalled body itself (with its request id, upstream aborted) at
# REQUEST_BODY_TIMEOUT; this backstop, for every other path, fires a moment later.
BODY_BACKSTOP_GRACE = 1.0
BODY_TIMEOUT_DETAIL = "The request body stopped arriving before it was complete."


def _body_timeout_response(path: str) -> bytes:
    request_id = new_request_id()
    body = problem_bytes("REQUEST_TIMEOUT", BODY_TIMEOUT_DETAIL, path, request_id)
    head = (
        f"HTTP/1.1 408 Request Timeout\r\nContent-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-ID: {request_id}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class GatewayHttpProtocol(HttpToolsProtocol):
    """httptools with coalesced writes and deadlines for request headers and bodies (slowloris).

    uvicorn times out idle keep-alive connections but not a client that trickles its
    headers; here a request whose headers are not complete within REQUEST_HEADER_TIMEOUT
    seconds of its first byte (or of the connection) gets a 408 and the connection closes.
    Likewise a request whose announced body gets no byte for REQUEST_BODY_TIMEOUT (plus a
    grace that lets the data plane answer first) gets a 408 problem and is closed; time
    while reading is paused (the application is behind, not the client) does not count.
    Timers are armed only when a read ends with the headers or the body incomplete, so a
    request that arrives whole (nearly all of them) costs no timer.
    """

    header_timer = None
    body_timer = None
    awaiting_headers = False

    def connection_made(self, transport) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.awaiting_headers:
            if self.header_timer is None and not self.transport.is_closing():
                self._arm_header_timer()
        elif self._body_pending():
            if not self.transport.is_closing():
                self._arm_body_timer()  # a byte arrived: the deadline starts again
        elif self.body_timer is not None:
            self._disarm_body_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.awaiting_headers = True

    def on_headers_complete(self) -> None:
        self.awaiting_headers = False
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        self._disarm_header_timer()
        self._disarm_body_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        from django.conf import settings

        self.header_timer = self.loop.call_later(settings.REQUEST_HEADER_TIMEOUT, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_too_slow(self) -> None:
        self.header_timer = None
        if not self.transport.is_closing():
            self.transport.write(_REQUEST_TIMEOUT_RESPONSE)
            self.transport.close()

    def _body_pending(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.more_body and not cycle.response_complete

    def _arm_body_timer(self) -> None:
        from django.conf import settings

        if self.body_timer is not None:
            self.body_timer.cancel()
        delay = settings.REQUEST_BODY_TIMEOUT + BODY_BACKSTOP_GRACE
        self.body_timer = self.loop.call_later(delay, self._body_too_slow)

    def _disarm_body_timer(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def _body_too_slow(self) -> None:
        self.body_timer = None
        if self.transport.is_closing() or not self._body_pending():
            return
        if self.flow.read_paused:
            self._arm_body_timer()
            return
        if not self.cycle.response_started:
            self.transport.write(_body_timeout_response(self.cycle.scope["path"]))
        self.transport.close()


class GatewayConfig(uvicorn.Config):
    """uvicorn's Config with the gateway's listener context: a minimum TLS version
    (GATEWAY_TLS_MIN_VERSION) that uvicorn's own options cannot express."""

    def __init__(self, *args, tls_min_version: str = "TLSv1.2", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tls_min_version = tls_min_version

    def load(self) -> None:
        super().load()
        if self.is_ssl:
            self.ssl = server_ssl_context(self.ssl_certfile, self.ssl_keyfile, self.tls_min_version)


def drain_data_plane() -> None:
    """Shutdown began: the data plane closes its SSE streams (either server would wait on them)."""
    from proxy.runtime import active_runtime

    runtime = active_runtime()
    if runtime is not None:
        runtime.drain()


class GatewayServer(uvicorn.Server):
    def handle_exit(self, sig, frame) -> None:
        drain_data_plane()
        super().handle_exit(sig, frame)


class GatewayWorkerProcess(multiprocess.Process):
    """uvicorn's worker process, running our Server so each worker drains SSE on exit."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = GatewayServer(config=self.config)
        return self._server


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _prepare_multiprocess_metrics() -> None:
    """Several workers: prometheus_client writes to shared files so /metrics sums them all.

    Must happen before any worker imports prometheus_client; stale files are removed.
    """
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        var_dir = Path(os.environ.get("GATEWAY_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(var_dir / f"prometheus-{os.getpid()}")
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def _check_tls(parser: argparse.ArgumentParser, args) -> None:
    """Refuse a half or unreadable TLS configuration before anything starts."""
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        parser.error("GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE must be set together")
    if args.tls_min_version not in TLS_MIN_VERSIONS:
        parser.error(f"GATEWAY_TLS_MIN_VERSION must be one of {', '.join(TLS_MIN_VERSIONS)}")
    if args.tls_cert_file:
        try:
            server_ssl_context(args.tls_cert_file, args.tls_key_file, args.tls_min_version)
        except (OSError, ssl.SSLError) as exc:
            parser.error(f"the TLS certificate and key do not load: {exc}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("GATEWAY_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", "8000")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("GATEWAY_WORKERS", "1")))
    parser.add_argument("--log-level", default=os.environ.get("UVICORN_LOG_LEVEL", "warning"))
    parser.add_argument("--graceful-timeout", type=float, default=30.0)
    parser.add_argument("--tls-cert-file", default=os.environ.get("GATEWAY_TLS_CERT_FILE", ""))
    parser.add_argument("--tls-key-file", default=os.environ.get("GATEWAY_TLS_KEY_FILE", ""))
    parser.add_argument("--tls-min-version", default=os.environ.get("GATEWAY_TLS_MIN_VERSION", "TLSv1.2"))
    parser.add_argument("--server", choices=SERVERS, default=os.environ.get("GATEWAY_SERVER", "uvicorn"))
    args = parser.parse_args(argv)
    _check_tls(parser, args)
    if args.server == "granian":  # an option, measured by `make bench-ab` (README, Performance)
        from gateway_project.serve_granian import granian_config_error, run_granian

        if error := granian_config_error(args):
            parser.error(error)
        run_granian(args)
        return
    config = GatewayConfig(
        APP,
        tls_min_version=args.tls_min_version,
        ssl_certfile=args.tls_cert_file or None,
        ssl_keyfile=args.tls_key_file or None,
        loop="uvloop",
        http=GatewayHttpProtocol,
        lifespan="on",
        workers=args.workers,
        proxy_headers=False,  # the gateway resolves X-Forwarded-For itself (TRUSTED_PROXIES)
        server_header=False,
        log_level=args.log_level,
        backlog=2048,
        access_log=False,  # the data plane writes its own structured access log
        timeout_graceful_shutdown=args.graceful_timeout,
        timeout_keep_alive=30,
        h11_max_incomplete_event_size=64 * 1024,
    )
    if args.workers > 1:
        _prepare_multiprocess_metrics()
    sock = bind(args.host, args.port)
    server = GatewayServer(config)
    if args.workers > 1:
        multiprocess.Process = GatewayWorkerProcess  # used by the supervisor for every (re)spawn
        multiprocess.Multiprocess(config, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])


if __name__ == "__main__":
    main()
