"""Fixtures for fault, shutdown and soak tests: private stores this test may kill, gateway
processes, and a steady load generator that records every outcome.

Private Redis and PostgreSQL servers run on free loopback ports and are stopped by their
own PID (or their own data directory); the shared servers on 6379 and 5432 are never touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.alerts.conftest import sse, tenant_user  # noqa: F401  (fixtures reused here)
from tests.conftest import require
from tests.live import GatewayProcess, free_port, wait_until  # noqa: F401  (re-exported)
from tests.proxy.conftest import (  # noqa: F401  (fixtures reused here)
    bearer,
    gateway,
    make_service,
    make_tenant,
    make_user,
    second_upstream,
    upstream,
)

STORE_START_SECONDS = 10


# --- a private Redis --------------------------------------------------------------------


class PrivateRedis:
    """A redis-server on its own port, without persistence: a restart comes back empty."""

    def __init__(self, directory: str) -> None:
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.directory,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + STORE_START_SECONDS
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def freeze(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung server, not a dead one)."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server this test starts on its own port and may kill (never the shared one)."""
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    server = PrivateRedis(str(tmp_path))
    server.start()
    yield server
    server.kill()


# --- a private PostgreSQL ---------------------------------------------------------------


def _postgres_bin() -> str | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for directory in reversed(candidates):
        if os.path.exists(os.path.join(directory, "initdb")):
            return directory
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PrivatePostgres:
    """A throwaway cluster in a temp dir on a free port. Its binaries refuse to run as root,
    so as root they run as the `postgres` OS user (runuser) on a directory it owns."""

    def __init__(self, bin_dir: str, directory: str, as_user: str | None) -> None:
        self.bin_dir = bin_dir
        self.directory = directory
        self.data = os.path.join(directory, "data")
        self.log = os.path.join(directory, "server.log")
        self.port = free_port()
        self.as_user = as_user

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [os.path.join(self.bin_dir, tool), *args]
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def init(self) -> None:
        result = self._run(
            "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        result = self._run(
            "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.log,
            "-w",
            "-t",
            str(STORE_START_SECONDS),
            "-o",
            options,
            "start",
        )
        if result.returncode != 0:
            with open(self.log) as log:
                raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}{log.read()}")

    def stop(self, mode: str = "immediate") -> None:
        """Stop this cluster only: pg_ctl signals the PID in this data dir's postmaster.pid."""
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", timeout=30)

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@pytest.fixture
def private_postgres():
    """A private PostgreSQL cluster (skips locally, fails in CI, if one cannot be started)."""
    bin_dir = _postgres_bin()
    require(bin_dir is not None, "PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    as_user = None
    if os.geteuid() == 0:
        require(shutil.which("runuser") is not None, "runuser is needed to run PostgreSQL as non-root")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        require(owner is not None, "no `postgres` OS user to run a private cluster as")
        as_user = "postgres"
    directory = tempfile.mkdtemp(prefix="gw-reliability-pg-")
    os.chmod(directory, 0o755)
    if as_user:
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    cluster = PrivatePostgres(bin_dir, directory, as_user)
    try:
        try:
            cluster.init()
            cluster.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            require(False, f"could not start a private PostgreSQL: {exc}")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


# --- gateway processes ------------------------------------------------------------------


@pytest.fixture
def gateway_processes(transactional_db):
    """Start GatewayProcess instances (the test database, keys and prefix); all stop at teardown."""
    started: list[GatewayProcess] = []

    def start(**extra_env: str) -> GatewayProcess:
        extra_env.setdefault("RATE_LIMIT_DEFAULT", "")
        process = GatewayProcess(extra_env=extra_env)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


# --- steady load ------------------------------------------------------------------------


@dataclass
class Outcome:
    label: str
    started: float
    elapsed: float
    status: int | None  # None: a transport error (connection reset, timeout)
    error: str = ""
    code: str = ""  # the problem document's code, if any


@dataclass
class Load:
    """Threads sending requests in a loop until stopped; every outcome is kept for assertions."""

    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        label: str,
        url: str,
        threads: int = 1,
        pause: float = 0.0,
        timeout: float = 10,
        **request,
    ) -> None:
        for _ in range(threads):
            thread = threading.Thread(
                target=self._loop, args=(label, url, pause, timeout, request), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _loop(self, label, url, pause, timeout, request) -> None:
        request = dict(request)
        method = request.pop("method", "GET")
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.request(method, url, **request)
                    code = ""
                    if response.headers.get("content-type", "").startswith("application/problem+json"):
                        code = response.json().get("code", "")
                    outcome = Outcome(
                        label, started, time.monotonic() - started, response.status_code, code=code
                    )
                except httpx.HTTPError as exc:
                    outcome = Outcome(label, started, time.monotonic() - started, None, repr(exc))
                with self._lock:
                    self.outcomes.append(outcome)
                if pause:
                    time.sleep(pause)

    def between(self, start: float, end: float, label: str | None = None) -> list[Outcome]:
        """Outcomes of requests that started at or after `start` and finished by `end`."""
        with self._lock:
            items = list(self.outcomes)
        return [
            o
            for o in items
            if o.started >= start and o.started + o.elapsed <= end and (label is None or o.label == label)
        ]

    def of(self, label: str) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.label == label]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


@pytest.fixture
def load():
    generator = Load()
    yield generator
    generator.stop()


def staff_token() -> str:
    """An access token of a staff superuser (created in the test database on first use)."""
    from tenancy.models import User
    from tenancy.tokens import tokens_for_user

    user = User.objects.filter(username="reliability-staff").first()
    if user is None:
        user = User.objects.create_user(
            "reliability-staff",
            email="reliability-staff@example.com",
            password="staff-pass-123",
            is_staff=True,
            is_superuser=True,
            role="admin",
        )
    return tokens_for_user(user)["access"]


# --- helpers shared by the fault and topology tests ---------------------------------------


def rate_policy(service, name: str, fail_mode: str, limit: int = 100_000, scope: str = "ip") -> None:
    from registry.models import RatePolicy

    RatePolicy.objects.create(
        name=name, scope=scope, service=service, limit=limit, window_seconds=60, fail_mode=fail_mode
    )


def post_alert(base: str, token: str, message: str) -> httpx.Response:
    return httpx.post(
        f"{base}/api/v1/alerts",
        json={"severity": "critical", "message": message},
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )


def routable(base: str, prefix: str) -> bool:
    return httpx.get(f"{base}/api/v1/{prefix}/x", timeout=5).status_code == 200
