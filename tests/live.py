"""Real servers on loopback for tests: the gateway under uvicorn and a recording upstream.

Each runs its own event loop in a background thread, on a socket bound to 127.0.0.1:0, and
stops by itself at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = ["GatewayServer", "RecordingUpstream", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bound_socket(port: int = 0) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it Nagle + delayed ACK add 40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class GatewayServer:
    """A complete gateway instance (its own runtime) served by uvicorn in a thread."""

    def __init__(self, **uvicorn_options) -> None:
        import uvicorn

        from gateway_project.asgi import build_application

        self.application = build_application()
        self.runtime = self.application.runtime
        self._socket = _bound_socket()
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # proxy_headers off: the gateway resolves X-Forwarded-For itself, via TRUSTED_PROXIES only.
        from gateway_project.serve import GatewayHttpProtocol

        options = {
            "log_level": "warning",
            "lifespan": "on",
            "loop": "asyncio",
            "http": GatewayHttpProtocol,
            "proxy_headers": False,
            "server_header": False,
        }
        options.update(uvicorn_options)
        self._server = uvicorn.Server(uvicorn.Config(self.application, **options))
        self._thread = threading.Thread(target=self._run, name=f"gateway-{self.port}", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._server.serve(sockets=[self._socket]))

    # Instances started and not yet stopped: tests/conftest.py stops any a test left behind,
    # since a live runtime keeps reading the shared test database and counting metrics.
    running: ClassVar[set] = set()

    def start(self, timeout: float = 20) -> GatewayServer:
        GatewayServer.running.add(self)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.runtime.drain)
        self._server.should_exit = True
        self._thread.join(30)
        if self._thread.is_alive():  # a loaded machine: stop waiting for in-flight work
            self._server.force_exit = True
            self._thread.join(10)
        self._socket.close()
        GatewayServer.running.discard(self)

    @property
    def thread_name(self) -> str:
        """The thread its event loop (and so its watcher and access log) runs in."""
        return self._thread.name

    def call(self, coroutine, timeout: float = 10):
        """Run a coroutine on the gateway's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def sync(self) -> None:
        """Rebuild the snapshot now (tests that just changed the registry)."""
        self.call(self.runtime.watcher.refresh(force=True))

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    header_list: list[tuple[str, str]]
    body: bytes
    port: int


@dataclass
class RecordingUpstream:
    """An aiohttp upstream on loopback that records what reached it and can misbehave on request."""

    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Streaming probes: set when an upload's first bytes arrive; `/bytes?hold=1` sends its
    # first chunk, then waits (up to 5 s) for a test to set `release_response`.
    upload_started: threading.Event = field(default_factory=threading.Event)
    release_response: threading.Event = field(default_factory=threading.Event)
    ssl_context: object = None  # an ssl.SSLContext: serve https (and wss) instead

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> RecordingUpstream:
        """Listen on `port` (0: any free one); a test can restart a stopped upstream on its port."""
        ready = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, args=(ready, port), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("upstream did not start")
        return self

    def _run(self, ready: threading.Event, port: int) -> None:
        from aiohttp import web

        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.loop.run_until_complete(self._runner.setup())
        sock = _bound_socket(port)
        self.port = sock.getsockname()[1]
        self.loop.run_until_complete(web.SockSite(self._runner, sock, ssl_context=self.ssl_context).start())
        ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True

        async def shutdown():
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def hits(self, path_prefix: str = "") -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    async def _handle(self, request):
        from aiohttp import web

        path = request.path
        if path.startswith("/ws") and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        if path.startswith("/upload"):
            return await self._upload(request)
        body = await request.read()
        received = Received(
            method=request.method,
            path=request.raw_path.split("?")[0],
            query=request.raw_path.partition("?")[2],
            headers={k.lower(): v for k, v in request.headers.items()},
            header_list=[(k.lower(), v) for k, v in request.headers.items()],
            body=body,
            port=self.port,
        )
        with self._lock:
            self.requests.append(received)
        if path.startswith("/status/"):
            status = int(path.split("/")[2])
            return web.json_response({"status": status}, status=status)
        if path.startswith("/slow"):
            await asyncio.sleep(float(request.query.get("delay", "1")))
            return web.json_response({"slept": True})
        if path.startswith("/sse"):
            return await self._sse(request)
        if path.startswith("/bytes"):
            return await self._bytes(request)
        if path.startswith("/reset"):
            return await self._reset(request)
        if path.startswith("/set-headers"):
            headers = {k: v for k, v in request.query.items()}
            return web.json_response({"ok": True}, headers=headers)
        if path.startswith("/health"):
            return web.json_response({"status": "ok"})
        return web.json_response(
            {
                "method": received.method,
                "path": received.path,
                "query": received.query,
                "headers": received.headers,
                "body": body.decode("utf-8", "replace"),
            }
        )

    async def _websocket(self, request):
        from aiohttp import WSMsgType, web

        with self._lock:
            self.requests.append(
                Received(
                    "WS",
                    request.path,
                    request.query_string,
                    {k.lower(): v for k, v in request.headers.items()},
                    [],
                    b"",
                    self.port,
                )
            )
        socket_ = web.WebSocketResponse()
        await socket_.prepare(request)
        async for message in socket_:
            if message.type == WSMsgType.TEXT:
                if message.data.startswith("close:"):
                    await socket_.close(code=int(message.data.split(":")[1]))
                    break
                await socket_.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await socket_.send_bytes(message.data)
        return socket_

    async def _upload(self, request):
        import hashlib

        from aiohttp import web

        digest = hashlib.sha256()
        total = 0
        async for chunk in request.content.iter_any():
            self.upload_started.set()
            digest.update(chunk)
            total += len(chunk)
        with self._lock:
            self.requests.append(
                Received(
                    request.method,
                    request.path,
                    request.query_string,
                    {k.lower(): v for k, v in request.headers.items()},
                    [],
                    b"",
                    self.port,
                )
            )
        return web.json_response({"received_bytes": total, "sha256": digest.hexdigest()})

    async def _sse(self, request):
        from aiohttp import web

        count = int(request.query.get("count", "3"))
        interval = float(request.query.get("interval", "0.2"))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for index in range(count):
            await response.write(
                f"id: {index}\ndata: {json.dumps({'n': index, 't': time.time()})}\n\n".encode()
            )
            await asyncio.sleep(interval)
        await response.write_eof()
        return response

    async def _bytes(self, request):
        from aiohttp import web

        total = int(request.query.get("n", "1000"))
        chunk = int(request.query.get("chunk", "65536"))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        sent = 0
        while sent < total:
            size = min(chunk, total - sent)
            await response.write(b"x" * size)
            sent += size
            if sent == size and request.query.get("hold"):
                for _ in range(250):
                    if self.release_response.is_set():
                        break
                    await asyncio.sleep(0.02)
        await response.write_eof()
        return response

    async def _reset(self, request):
        from aiohttp import web

        length = request.query.get("length", "1000000")
        response = web.StreamResponse(headers={"Content-Type": "text/plain", "Content-Length": length})
        await response.prepare(request)
        await response.write(b"partial" * 10)
        await asyncio.sleep(0.05)
        request.transport.close()
        return response


def database_url_for_subprocess() -> str:
    """The test database (as pytest-django set it up) as a DATABASE_URL for child processes."""
    from django.db import connection

    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{params['NAME']}"
    auth = params["USER"] or ""
    if params.get("PASSWORD"):
        auth += f":{params['PASSWORD']}"
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{params['NAME']}"


class GatewayProcess:
    """A gateway in its own process (uvicorn), sharing this test's database, Redis and keys."""

    def __init__(self, extra_env: dict[str, str] | None = None, workers: int = 1) -> None:
        import os
        import sys

        from django.conf import settings

        self.port = free_port()
        scheme = "https" if (extra_env or {}).get("GATEWAY_TLS_CERT_FILE") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            # Test settings: the same password hasher and key prefix as this test process.
            DJANGO_SETTINGS_MODULE="gateway_project.settings_test",
            DEBUG="0",
            SECRET_KEY=settings.SECRET_KEY,
            DATABASE_URL=database_url_for_subprocess(),
            REDIS_URL=settings.REDIS_URL,
            CACHE_KEY_PREFIX=settings.CACHE_KEY_PREFIX,
            GATEWAY_VAR_DIR=str(settings.VAR_DIR),
            RATE_LIMIT_DEFAULT=settings.RATE_LIMIT_DEFAULT,
            LOG_LEVEL="WARNING",
        )
        env.update(extra_env or {})
        self.command = [
            sys.executable,
            "-m",
            "gateway_project.serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--graceful-timeout",
            "3",
        ]
        self.env = env
        self.process = None

    def start(self, timeout: float = 20) -> GatewayProcess:
        import subprocess

        import httpx

        # Its own process group: stop() ends the workers too, even when the supervisor is
        # killed before it could stop them (a worker left behind keeps serving the test database).
        self.process = subprocess.Popen(self.command, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway process exited with {self.process.returncode}")
            try:
                httpx.get(f"{self.url}/api/v1/__ready__", timeout=0.5, verify=False)  # noqa: S501 - readiness only
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gateway process did not start")

    def stop(self) -> None:
        import os
        import signal
        import subprocess

        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        with contextlib.suppress(ProcessLookupError):  # workers the supervisor did not take along
            os.killpg(self.process.pid, signal.SIGKILL)


@contextlib.contextmanager
def demo_admin_session(base_url: str):
    """An httpx client logged in to the Django admin as the demo staff user (`admin`)."""
    import httpx

    from fixtures.demo_data import ADMIN_PASSWORD

    with httpx.Client(base_url=base_url, timeout=10, trust_env=False) as client:
        client.get("/admin/login/")
        form = {
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
            "next": "/admin/",
        }
        login = client.post("/admin/login/", data=form, headers={"Origin": base_url})
        assert login.status_code == 302 and login.headers["location"] == "/admin/", login.text[:500]
        yield client


def wait_until(condition, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Poll `condition()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def trickle_headers(port: int) -> tuple[bytes, float]:
    """A slowloris client: a request line, then one header line every 0.3 s for 6 s. Returns
    what the gateway sent before it closed the connection, and the seconds that took."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /api/v1/sales/x HTTP/1.1\r\n")
        data = b""
        try:
            for _ in range(20):  # never finishes in time
                sock.sendall(b"X-Slow: 1\r\n")
                time.sleep(0.3)
        except OSError:
            pass
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except OSError:
            pass
        return data, time.monotonic() - started
