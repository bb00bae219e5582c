"""`make cluster`: the scale-out topology on one machine (SPEC section 3, "Scale-out").

Against a running PostgreSQL (DATABASE_URL, created if missing) and Redis (REDIS_URL) it
migrates and loads the demo data once, then starts the demo upstream, N gateway instances
(`gateway_project.serve`), one Celery worker, one beat and a round-robin front: nginx when
installed, else the small asyncio TCP proxy below. Every child shares one SECRET_KEY,
GATEWAY_VAR_DIR (so one JWT key pair), database and Redis, and trusts the front's
X-Forwarded-For. Ctrl-C or SIGTERM stops every child it started by PID; a child dying stops
the rest and exits 1. Supervision is `gateway_project.dev.devrun`'s.
Run: `python -m gateway_project.dev.cluster` (CLUSTER_BASE_PORT, CLUSTER_FRONT_PORT,
CLUSTER_INSTANCES, CLUSTER_FRONT=auto|nginx|python, GATEWAY_VAR_DIR and
DEMO_UPSTREAM_BASE_PORT move it). `python -m gateway_project.dev.cluster front LISTEN BACKEND...`
runs the Python front alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from fixtures.demo_data import DEMO_PASSWORD
from fixtures.demo_ports import demo_host, demo_port_map
from gateway_project.dev import cluster_hybrid, devrun

__all__ = ["CannotStart", "ClusterConfig", "Front", "RoundRobinFront", "main", "nginx_config"]

BASE_DIR = devrun.BASE_DIR
HOST = "127.0.0.1"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/gateway_cluster"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"
DEFAULT_BASE_PORT = 8001
DEFAULT_FRONT_PORT = 8080
DEFAULT_INSTANCES = 2
FRONT_KINDS = ("auto", "nginx", "python")
POSTGRES_SCHEMES = ("postgres", "postgresql")
MAINTENANCE_DATABASE = "postgres"
STORE_TIMEOUT_SECONDS = 3
TRUSTED_FRONT = "127.0.0.1/32"  # the front connects from loopback
SECRET_KEY_FILE = "secret_key"
SECRET_KEY_BYTES = 50
READY_MARKER = "cluster: ready"
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
NGINX_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# The proxy directives shared with the compose front: one place for SSE, WebSocket, XFF.
NGINX_PROXY_SNIPPET = BASE_DIR / "deploy" / "nginx" / "gateway-proxy.conf"
WORKER_ARGS = shlex.split("-A gateway_project worker --loglevel=INFO --concurrency=1")
BEAT_ARGS = shlex.split("-A gateway_project beat --loglevel=INFO")
FRONT_CONNECT_TIMEOUT_SECONDS = 3.0
FRONT_CHUNK_BYTES = 64 * 1024
FRONT_BACKLOG = 1024


class CannotStart(Exception):
    """The cluster cannot start (a store, a port, the front); the message says why."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where the cluster's stores are and where its processes listen, from the environment."""

    database_url: str
    redis_url: str
    var_dir: Path
    base_port: int
    front_port: int
    instances: int
    front: str
    upstream_host: str
    upstream_ports: dict[str, int]
    mode: str = cluster_hybrid.TRADITIONAL  # or hybrid: a control plane and data planes

    @classmethod
    def from_env(cls) -> ClusterConfig:
        front = (os.environ.get("CLUSTER_FRONT") or "auto").lower()
        if front not in FRONT_KINDS:
            raise ValueError(f"CLUSTER_FRONT={front!r}: expected one of {', '.join(FRONT_KINDS)}")
        mode = (os.environ.get("CLUSTER_MODE") or cluster_hybrid.TRADITIONAL).lower()
        if mode not in cluster_hybrid.MODES:
            raise ValueError(f"CLUSTER_MODE={mode!r}: expected one of {', '.join(cluster_hybrid.MODES)}")
        var_dir = os.environ.get("GATEWAY_VAR_DIR") or BASE_DIR / "var" / "cluster"
        return cls(
            database_url=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            redis_url=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
            var_dir=Path(var_dir).resolve(),
            base_port=int(os.environ.get("CLUSTER_BASE_PORT") or DEFAULT_BASE_PORT),
            front_port=int(os.environ.get("CLUSTER_FRONT_PORT") or DEFAULT_FRONT_PORT),
            instances=int(os.environ.get("CLUSTER_INSTANCES") or DEFAULT_INSTANCES),
            front=front,
            upstream_host=demo_host(),
            upstream_ports=demo_port_map(),
            mode=mode,
        )

    @property
    def instance_ports(self) -> list[int]:
        return [self.base_port + index for index in range(self.instances)]

    @property
    def hybrid(self) -> bool:
        return self.mode == cluster_hybrid.HYBRID

    @property
    def gateway_ports(self) -> list[int]:
        """Every gateway process's port: the instances, and the control plane in hybrid mode."""
        extra = [cluster_hybrid.control_plane_port(self)] if self.hybrid else []
        return [*self.instance_ports, *extra]

    @property
    def front_url(self) -> str:
        return f"http://{HOST}:{self.front_port}"

    def instance_url(self, port: int) -> str:
        return f"http://{HOST}:{port}"

    def run_config(self) -> devrun.RunConfig:
        """The same facts in devrun's terms, to reuse its environment and port checks."""
        return devrun.RunConfig(
            host=HOST,
            port=self.front_port,
            var_dir=self.var_dir,
            upstream_host=self.upstream_host,
            upstream_ports=self.upstream_ports,
        )


@dataclass(frozen=True)
class Front:
    """The round-robin front: what it is and the command that runs it in the foreground."""

    description: str
    command: list[str]
    is_nginx: bool


# --- Stores -----------------------------------------------------------------------------


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database named in `url` unless it exists; True if it was created."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if parts.scheme not in POSTGRES_SCHEMES or not name:
        raise CannotStart(f"DATABASE_URL must name a PostgreSQL database, got {redact(url)}")
    maintenance = urlunsplit(parts._replace(path=f"/{MAINTENANCE_DATABASE}"))
    try:
        with psycopg.connect(maintenance, connect_timeout=STORE_TIMEOUT_SECONDS, autocommit=True) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if conn.execute(query, (name,)).fetchone():
                return False
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # a concurrent run won
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        message = f"PostgreSQL at {redact(url)} is unusable: {reason} (set DATABASE_URL)"
        raise CannotStart(message) from exc


def check_redis(url: str) -> None:
    import redis

    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=STORE_TIMEOUT_SECONDS, socket_timeout=STORE_TIMEOUT_SECONDS
        )
        with contextlib.closing(client):
            client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise CannotStart(f"Redis at {redact(url)} is unreachable: {exc} (set REDIS_URL)") from exc


def shared_secret_key(var_dir: Path, file_name: str = SECRET_KEY_FILE) -> str:
    """One SECRET_KEY (or cluster token) for every child, made once under the (git-ignored)
    var dir, 0600."""
    path = var_dir / file_name
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(SECRET_KEY_BYTES))
    return path.read_text().strip()


# --- Children ---------------------------------------------------------------------------


def cluster_environment(config: ClusterConfig, secret_key: str) -> dict[str, str]:
    """devrun's child environment, production-like: DEBUG off, PostgreSQL, Redis everywhere."""
    env = devrun.child_environment(config.run_config())
    env.update(
        DEBUG=os.environ.get("DEBUG") or "0",
        SECRET_KEY=secret_key,
        DATABASE_URL=config.database_url,
        REDIS_URL=config.redis_url,
        CELERY_BROKER_URL=config.redis_url,
        TRUSTED_PROXIES=TRUSTED_FRONT,
    )
    return env


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    return found or next((path for path in NGINX_CANDIDATES if os.access(path, os.X_OK)), None)


def nginx_config(config: ClusterConfig, directory: Path) -> str:
    """A non-root nginx config: every path under `directory`, round robin over the instances."""
    servers = "\n".join(f"        server {HOST}:{port};" for port in config.instance_ports)
    temp = "\n".join(f"    {kind}_temp_path {directory / 'temp' / kind};" for kind in NGINX_TEMP_DIRS)
    # Running as root, workers would drop to "nobody" and could not reach the var dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""# Generated by gateway_project.dev.cluster for this run; edits are overwritten.
{user}worker_processes 1;
events {{
    worker_connections 1024;
}}
http {{
    access_log {directory / "access.log"};
{temp}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
    upstream gateway {{
{servers}
        keepalive 32;
    }}
    server {{
        listen {HOST}:{config.front_port};
        location / {{
            proxy_pass http://gateway;
            include {NGINX_PROXY_SNIPPET};
        }}
    }}
}}
"""


def nginx_command(binary: str, config: ClusterConfig) -> list[str]:
    """Write the config into the var dir and return the foreground nginx command for it."""
    directory = config.var_dir / "nginx"
    for kind in NGINX_TEMP_DIRS:
        (directory / "temp" / kind).mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(nginx_config(config, directory))
    error_log = directory / "error.log"
    globals_ = f"daemon off; pid {directory / 'nginx.pid'}; error_log {error_log} warn;"
    return [binary, "-e", str(error_log), "-p", str(directory), "-c", str(conf), "-g", globals_]


def nginx_config_error(command: list[str]) -> str | None:
    """`nginx -t` on the generated config: its complaint, or None when the config is valid."""
    result = subprocess.run(
        [command[0], "-t", "-q", *command[1:]], capture_output=True, text=True, timeout=30
    )
    return None if result.returncode == 0 else (result.stderr or result.stdout).strip()


def choose_front(config: ClusterConfig) -> Front:
    """nginx when installed (or asked for), else the Python proxy below."""
    binary = nginx_binary() if config.front != "python" else None
    if binary:
        return Front("nginx round robin", nginx_command(binary, config), is_nginx=True)
    if config.front == "nginx":
        raise CannotStart("CLUSTER_FRONT=nginx but nginx is not installed")
    backends = [f"{HOST}:{port}" for port in config.instance_ports]
    command = [sys.executable, "-m", "gateway_project.dev.cluster", "front"]
    command += [f"{HOST}:{config.front_port}", *backends]
    return Front("Python TCP round robin", command, is_nginx=False)


def service_commands(config: ClusterConfig, front: list[str]) -> list[tuple[str, list[str]]]:
    python = sys.executable
    commands = [("demo-upstream", [python, "-m", "fixtures.demo_upstream"])]
    for index, port in enumerate(config.instance_ports, start=1):
        listen = ["--host", HOST, "--port", str(port)]
        serve = [python, "-m", "gateway_project.serve", *devrun.SERVE_ARGS, *listen]
        commands.append((f"gateway-{index}", serve))
    if config.hybrid:
        listen = ["--host", HOST, "--port", str(cluster_hybrid.control_plane_port(config))]
        serve = [python, "-m", "gateway_project.serve", *devrun.SERVE_ARGS, *listen]
        commands.append((cluster_hybrid.CONTROL_PLANE, serve))
    commands += [
        ("worker", [python, "-m", "celery", *WORKER_ARGS]),
        ("beat", [python, "-m", "celery", *BEAT_ARGS]),
        ("front", front),
    ]
    return commands


def busy_ports(config: ClusterConfig) -> list[str]:
    run_config = config.run_config()
    busy = devrun.busy_ports(run_config)  # the front and the demo upstream
    for port in config.gateway_ports:
        busy += devrun.busy_ports(dataclasses.replace(run_config, port=port, upstream_ports={}))
    return busy


def readiness_urls(config: ClusterConfig) -> list[str]:
    run_config = config.run_config()
    upstreams = [f"{run_config.upstream_url(name)}/health" for name in config.upstream_ports]
    instances = [f"{config.instance_url(port)}/health/ready" for port in config.gateway_ports]
    return [*upstreams, *instances, f"{config.front_url}/health/ready"]


def banner(config: ClusterConfig, front: Front, children: list[devrun.Child]) -> str:
    url = config.front_url
    staff = cluster_hybrid.control_plane_url(config) if config.hybrid else url  # admin, logins
    instances = ", ".join(config.instance_url(port) for port in config.instance_ports)
    width = max(len(f"{user} / {password}") for user, password, _ in devrun.DEMO_LOGINS)
    logins = [f"  {f'{user} / {password}':<{width}}  {role}" for user, password, role in devrun.DEMO_LOGINS]
    login = (
        f"curl -s -X POST {staff}/api/v1/auth/login -H 'Content-Type: application/json' "
        f'-d \'{{"username": "owner@bakery-madrid.example", "password": "{DEMO_PASSWORD}"}}\''
    )
    extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access\"])'"
    pids = " ".join(f"{child.name}={child.pid}" for child in children)
    return "\n".join(
        [
            "",
            f"{READY_MARKER}: {config.instances} {'data planes' if config.hybrid else 'gateway instances'}"
            f" behind {url}"
            f" ({front.description})"
            "  (Ctrl-C stops everything)",
            f"  Front            {url}",
            f"  Instances        {instances}",
            *(
                [f"  Control plane    {staff}  (data planes: {staff}/api/manage/data-planes/)"]
                if config.hybrid
                else []
            ),
            f"  Admin            {staff}/admin/",
            f"  Management API   {staff}/api/manage/",
            f"  API docs         {staff}/api/docs/",
            f'  Which instance   {url}/api/v1/status  ("instance": host:pid)',
            f"  PostgreSQL       {redact(config.database_url)}",
            f"  Redis            {redact(config.redis_url)}  (cache, limits, pub/sub, broker)",
            f"  Var dir          {config.var_dir}  (shared SECRET_KEY and JWT key pair)",
            "Demo logins (public demo passwords: never load the demo data in production):",
            *logins,
            "Try it:",
            f"  TOKEN=$({login} | {extract})",
            f'  curl -s {url}/api/v1/sales/echo -H "Authorization: Bearer $TOKEN"',
            f"cluster: pids {pids}",
            "",
        ]
    )


# --- Orchestration ----------------------------------------------------------------------


def _say(message: str, error: bool = False) -> None:
    print(f"cluster: {message}", file=sys.stderr if error else sys.stdout, flush=True)


def prepare(config: ClusterConfig) -> tuple[dict[str, str], Front]:
    """Check the stores and ports, create the database; the environment and the front."""
    if config.front_port in config.gateway_ports:
        raise CannotStart(
            f"CLUSTER_FRONT_PORT={config.front_port} is also a gateway's port "
            f"({', '.join(map(str, config.gateway_ports))}): choose another."
        )
    if busy := busy_ports(config):
        raise CannotStart(
            f"already in use: {', '.join(busy)}. Stop what holds them, or set "
            "CLUSTER_BASE_PORT / CLUSTER_FRONT_PORT / DEMO_UPSTREAM_BASE_PORT."
        )
    check_redis(config.redis_url)
    if ensure_database(config.database_url):
        _say(f"created database {redact(config.database_url)}")
    config.var_dir.mkdir(parents=True, exist_ok=True)
    env = cluster_environment(config, shared_secret_key(config.var_dir))
    if config.hybrid:
        env["GATEWAY_CLUSTER_TOKEN"] = shared_secret_key(config.var_dir, cluster_hybrid.CLUSTER_TOKEN_FILE)
    front = choose_front(config)
    if front.is_nginx and (problem := nginx_config_error(front.command)):
        raise CannotStart(f"nginx rejects the generated config: {problem}")
    return env, front


def run_services(config: ClusterConfig, env: dict[str, str], front: Front, stop: threading.Event) -> int:
    """Start every long-running child, announce them once ready, and stop them all at the end."""
    children: list[devrun.Child] = []
    try:
        for name, command in service_commands(config, front.command):
            child_env = cluster_hybrid.child_environment(config, env, name)
            children.append(devrun.Child(name, command, child_env, config.var_dir))
        urls = readiness_urls(config)
        if reason := devrun.wait_until_ready(children, urls, stop, devrun.READY_TIMEOUT_SECONDS):
            if stop.is_set():
                return 0
            _say(f"not ready: {reason}; stopping.", error=True)
            return 1
        print(banner(config, front, children), flush=True)
        return devrun.supervise(children, stop)
    finally:
        devrun.stop_children(children)
        _say("stopped")


def run(config: ClusterConfig, stop: threading.Event) -> int:
    """The whole `make cluster`; 0 after a requested stop, 1 after any failure."""
    try:
        env, front = prepare(config)
    except CannotStart as exc:
        _say(f"cannot start: {exc}. See docs/scale-out.md.", error=True)
        return 1
    # Children run in the var dir, as in devrun, so files they drop in their cwd stay there.
    if not devrun.run_setup(env, config.var_dir, stop):
        return 0 if stop.is_set() else 1
    return run_services(config, env, front, stop)


# --- The Python front (when nginx is not installed) -------------------------------------


class RoundRobinFront:
    """TCP round robin: each client connection goes to the next backend that accepts it.

    Bytes are relayed as they come, so SSE and WebSocket pass through unbuffered. It works
    per connection, not per request, and adds no X-Forwarded-For (nginx does both).
    """

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self._next = 0

    def _rotation(self) -> list[tuple[str, int]]:
        start, self._next = self._next, (self._next + 1) % len(self.backends)
        return self.backends[start:] + self.backends[:start]

    async def _connect(self):
        for host, port in self._rotation():
            with contextlib.suppress(OSError, TimeoutError):
                return await asyncio.wait_for(
                    asyncio.open_connection(host, port), FRONT_CONNECT_TIMEOUT_SECONDS
                )
        return None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:  # no backend accepts: the client sees the connection close
            writer.close()
            return
        up_reader, up_writer = upstream
        try:
            await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))
        finally:
            for stream in (up_writer, writer):
                stream.close()


async def _relay(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close; on a broken side close the sink so the peer ends too."""
    try:
        while chunk := await source.read(FRONT_CHUNK_BYTES):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (OSError, RuntimeError):
        sink.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or HOST, int(port)


async def serve_front(listen: tuple[str, int], backends: list[tuple[str, int]]) -> None:
    """Serve until SIGTERM or SIGINT."""
    front = RoundRobinFront(backends)
    server = await asyncio.start_server(
        front.handle, listen[0], listen[1], reuse_address=True, backlog=FRONT_BACKLOG
    )
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    async with server:
        await stopped.wait()


def front_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway_project.dev.cluster front")
    parser.add_argument("listen", help="HOST:PORT to listen on")
    parser.add_argument("backends", nargs="+", help="HOST:PORT of each gateway instance")
    args = parser.parse_args(argv)
    asyncio.run(serve_front(_address(args.listen), [_address(b) for b in args.backends]))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["front"]:
        return front_main(argv[1:])
    try:
        config = ClusterConfig.from_env()
    except ValueError as exc:
        _say(f"cannot start: {exc}", error=True)
        return 1
    return run(config, devrun._install_signal_handlers("cluster"))


if __name__ == "__main__":
    sys.exit(main())
