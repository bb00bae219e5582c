"""`make run`: the whole gateway on one machine with embedded defaults (SPEC section 12).

Migrates the SQLite registry, loads the demo data, then starts the demo upstream, a Celery
worker with embedded beat and the gateway under uvicorn as child processes, and prints the
URLs and demo logins once everything answers. Ctrl-C or SIGTERM stops every child it
started, and only those; if a child dies unexpectedly the rest are stopped and it exits 1.
Run: `python -m gateway_project.dev.devrun` (GATEWAY_HOST, GATEWAY_PORT, GATEWAY_VAR_DIR,
DEMO_UPSTREAM_HOST and DEMO_UPSTREAM_BASE_PORT move it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fixtures.demo_data import ADMIN_PASSWORD, DEMO_PASSWORD
from fixtures.demo_ports import FAKES, SERVICE_OFFSETS, demo_host, demo_port_map

__all__ = ["Child", "RunConfig", "main"]

BASE_DIR = Path(__file__).resolve().parents[2]
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 15.0  # Celery's warm shutdown on the filesystem broker takes ~6 s
POLL_SECONDS = 0.2
PROBE_TIMEOUT_SECONDS = 1.0
WHATSAPP_API_VERSION = "v17.0"
READY_MARKER = "devrun: ready"
DEMO_LOGINS = [
    ("admin", ADMIN_PASSWORD, "staff superuser: admin, management API"),
    ("owner@bakery-madrid.example", DEMO_PASSWORD, "member of bakery-madrid"),
    ("viewer@bakery-madrid.example", DEMO_PASSWORD, "viewer of bakery-madrid"),
]
# --quiet: no startup banner; the worker's records go through settings.LOGGING like the rest.
CELERY_ARGS = shlex.split("-A gateway_project --quiet worker -B --loglevel=INFO --concurrency=1")
# The console the children share: one readable line per record (gateway_project.logs), and
# the access log through the same formatter rather than as raw JSON lines.
CONSOLE_LOGGING = {"LOG_FORMAT": "console", "ACCESS_LOG": "logging"}
# Celery warns at every start when run as root (common in containers) or from a sudo/wheel
# primary group. Its worker accepts only JSON here (with pickle it would refuse to start),
# so on a developer's machine the warning says nothing to act on.
CELERY_ROOT_WARNING = "ignore:You're running the worker with superuser privileges"
# gateway_project.serve: uvicorn (uvloop, httptools) without proxy headers (the gateway
# resolves X-Forwarded-For itself), SSE streams closed at shutdown, a short graceful
# timeout so an open WebSocket cannot hold up Ctrl-C.
SERVE_ARGS = shlex.split("--graceful-timeout 5 --log-level info")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class RunConfig:
    """Where everything listens and lives, from the environment."""

    host: str
    port: int
    var_dir: Path
    upstream_host: str
    upstream_ports: dict[str, int]

    @classmethod
    def from_env(cls) -> RunConfig:
        var_dir = Path(os.environ.get("GATEWAY_VAR_DIR") or BASE_DIR / "var").resolve()
        return cls(
            host=os.environ.get("GATEWAY_HOST") or DEFAULT_HOST,
            port=int(os.environ.get("GATEWAY_PORT") or DEFAULT_PORT),
            var_dir=var_dir,
            upstream_host=demo_host(),
            upstream_ports=demo_port_map(),
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def upstream_url(self, name: str) -> str:
        return f"http://{self.upstream_host}:{self.upstream_ports[name]}"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if devrun itself is killed, so nothing is orphaned."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """A process devrun started, leading its own process group so its helpers stop with it.

    Exits are observed without reaping (`waitid(WNOWAIT)`): until devrun reaps the leader,
    its group id cannot be reused, so signalling the group reaches only our descendants.
    """

    def __init__(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        """The exit code (negative signal number) once it has exited, else None."""
        if self.process.returncode is not None or not hasattr(os, "waitid"):
            return self.process.poll()
        info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def terminate(self) -> None:
        if self.exit_code() is None:
            os.kill(self.pid, signal.SIGTERM)

    def finish(self) -> None:
        """Kill whatever is left of its group (the leader too, if still running) and reap it."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()


def stop_children(children: list[Child], timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM the children last-started first, each once the later ones have exited, within
    `timeout` seconds together; then SIGKILL what remains.

    In order, so nothing outlives what it depends on: a health sweep the Celery worker runs
    while shutting down must not find the demo upstream already gone and log every target
    as unhealthy.
    """
    deadline = time.monotonic() + timeout
    for child in reversed(children):
        child.terminate()
        while time.monotonic() < deadline and child.exit_code() is None:
            time.sleep(0.05)
    for child in children:
        if child.exit_code() is None:
            print(f"devrun: {child.name} (pid {child.pid}) ignored SIGTERM; killing it", flush=True)
        child.finish()


def child_environment(config: RunConfig) -> dict[str, str]:
    """The children's environment: embedded defaults, the project importable from any cwd."""
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env["GATEWAY_VAR_DIR"] = str(config.var_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BASE_DIR), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in CONSOLE_LOGGING.items():
        env.setdefault(name, value)
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), CELERY_ROOT_WARNING]))
    fakes = config.upstream_url(FAKES)
    env.setdefault("NOMINATIM_URL", fakes)
    env.setdefault("WHATSAPP_API_URL", f"{fakes}/whatsapp/{WHATSAPP_API_VERSION}")
    return env


def setup_commands() -> list[tuple[str, list[str]]]:
    manage = str(BASE_DIR / "manage.py")
    return [
        ("migrate", [sys.executable, manage, "migrate", "--noinput"]),
        ("load_demo", [sys.executable, manage, "load_demo"]),
    ]


def service_commands(config: RunConfig) -> list[tuple[str, list[str]]]:
    python = sys.executable
    listen = ["--host", config.host, "--port", str(config.port)]
    return [
        ("demo-upstream", [python, "-m", "fixtures.demo_upstream"]),
        ("celery", [python, "-m", "celery", *CELERY_ARGS]),
        ("gateway", [python, "-m", "gateway_project.serve", *SERVE_ARGS, *listen]),
    ]


def busy_ports(config: RunConfig) -> list[str]:
    """Ports we are about to listen on that something else already holds."""
    wanted = [(config.host, config.port)]
    wanted += [(config.upstream_host, port) for port in config.upstream_ports.values()]
    busy = []
    for host, port in wanted:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                sock.bind((host, port))
            except OSError:
                busy.append(f"{host}:{port}")
    return busy


def run_step(name: str, command: list[str], env: dict, cwd: Path, stop: threading.Event) -> bool:
    """Run one setup command to completion; False if it failed or a stop was requested."""
    print(f"devrun: {name} ...", flush=True)
    child = Child(name, command, env, cwd)
    while (code := child.exit_code()) is None and not stop.wait(POLL_SECONDS):
        pass
    if code is None:
        stop_children([child])
        return False
    child.finish()
    if code != 0:
        print(f"devrun: {name} failed with exit code {code}", file=sys.stderr, flush=True)
    return code == 0


def _answers(opener: urllib.request.OpenerDirector, url: str) -> bool:
    try:
        with opener.open(url, timeout=PROBE_TIMEOUT_SECONDS) as response:
            return response.status == 200
    except OSError:
        return False


def first_exited(children: list[Child]) -> Child | None:
    return next((child for child in children if child.exit_code() is not None), None)


def wait_until_ready(
    children: list[Child], urls: list[str], stop: threading.Event, timeout: float
) -> str | None:
    """Poll each URL until it answers 200; the reason it gave up, or None when all answer."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending:
        if stop.is_set():
            return "stop requested"
        if dead := first_exited(children):
            return f"{dead.name} (pid {dead.pid}) exited with code {dead.exit_code()}"
        if _answers(opener, pending[0]):
            pending.pop(0)
        elif time.monotonic() > deadline:
            return f"{pending[0]} did not answer 200 within {timeout:.0f} s"
        else:
            stop.wait(POLL_SECONDS)
    return None


def readiness_urls(config: RunConfig) -> list[str]:
    upstreams = [f"{config.upstream_url(name)}/health" for name in config.upstream_ports]
    return [*upstreams, f"{config.url}/admin/login/"]


def banner(config: RunConfig, children: list[Child]) -> str:
    url = config.url
    first, last = min(SERVICE_OFFSETS.values()), max(SERVICE_OFFSETS.values())
    base = config.upstream_ports[FAKES]
    login = (
        f"curl -s -X POST {url}/api/v1/auth/login -H 'Content-Type: application/json' "
        f'-d \'{{"username": "owner@bakery-madrid.example", "password": "{DEMO_PASSWORD}"}}\''
    )
    extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access\"])'"
    pids = " ".join(f"{child.name}={child.pid}" for child in children)
    width = max(len(f"{user} / {password}") for user, password, _ in DEMO_LOGINS)
    logins = [f"  {f'{user} / {password}':<{width}}  {role}" for user, password, role in DEMO_LOGINS]
    return "\n".join(
        [
            "",
            f"{READY_MARKER}: the gateway is up at {url}  (Ctrl-C stops everything)",
            f"  Gateway          {url}",
            f"  Admin            {url}/admin/",
            f"  Management API   {url}/api/manage/",
            f"  API docs         {url}/api/docs/",
            f"  Dashboard        {url}/dashboard/",
            f"  Tenant portal    {url}/portal/",
            f"  Health           {url}/health",
            f"  Demo services    {url}/api/v1/{{{','.join(SERVICE_OFFSETS)}}}/echo",
            f"  Demo upstream    http://{config.upstream_host}:{base + first}-{base + last}"
            f" (fake Nominatim and WhatsApp on :{base})",
            "Demo logins (public demo passwords: never load the demo data in production):",
            *logins,
            "Try it:",
            f"  TOKEN=$({login} | {extract})",
            f'  curl -s {url}/api/v1/sales/echo -H "Authorization: Bearer $TOKEN"',
            f"devrun: pids {pids}",
            "",
        ]
    )


def supervise(children: list[Child], stop: threading.Event) -> int:
    """Until a stop is requested: 0; if a child dies first: 1, with the reason."""
    while not stop.wait(POLL_SECONDS):
        if dead := first_exited(children):
            print(
                f"devrun: {dead.name} (pid {dead.pid}) exited unexpectedly with code "
                f"{dead.exit_code()}; stopping the rest.",
                file=sys.stderr,
                flush=True,
            )
            return 1
    return 0


def _install_signal_handlers(name: str = "devrun") -> threading.Event:
    """SIGINT/SIGTERM set the returned event; the supervisor loop then stops its children."""
    stop = threading.Event()

    def request_stop(signum, frame) -> None:
        if not stop.is_set():
            print(f"\n{name}: {signal.Signals(signum).name} received, stopping ...", flush=True)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop


def run_setup(env: dict[str, str], cwd: Path, stop: threading.Event) -> bool:
    """Migrate and load the demo data; False if a step failed or a stop was requested."""
    return all(
        not stop.is_set() and run_step(name, command, env, cwd, stop) for name, command in setup_commands()
    )


def run_services(config: RunConfig, env: dict[str, str], cwd: Path, stop: threading.Event) -> int:
    """Start the long-running children, announce them once ready, and stop them all at the end."""
    children: list[Child] = []
    try:
        for name, command in service_commands(config):
            children.append(Child(name, command, env, cwd))
        urls = readiness_urls(config)
        if reason := wait_until_ready(children, urls, stop, READY_TIMEOUT_SECONDS):
            if stop.is_set():
                return 0
            print(f"devrun: not ready: {reason}; stopping.", file=sys.stderr, flush=True)
            return 1
        print(banner(config, children), flush=True)
        return supervise(children, stop)
    finally:
        stop_children(children)
        print("devrun: stopped", flush=True)


def run(config: RunConfig, stop: threading.Event) -> int:
    """The whole `make run`; the exit code (0 after a requested stop, 1 after a failure)."""
    if busy := busy_ports(config):
        print(
            f"devrun: already in use: {', '.join(busy)}. Stop what holds them, or set "
            "GATEWAY_PORT / DEMO_UPSTREAM_BASE_PORT.",
            file=sys.stderr,
            flush=True,
        )
        return 1
    config.var_dir.mkdir(parents=True, exist_ok=True)
    env = child_environment(config)
    # Children run in var/, so files a library puts in its cwd (kombu's filesystem
    # transport keeps its exchange tables in ./control by default) stay out of the checkout.
    cwd = config.var_dir
    if not run_setup(env, cwd, stop):
        return 0 if stop.is_set() else 1
    return run_services(config, env, cwd, stop)


def main() -> int:
    stop = _install_signal_handlers()
    return run(RunConfig.from_env(), stop)


if __name__ == "__main__":
    sys.exit(main())
