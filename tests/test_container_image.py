"""The container image, for real: built with podman from deploy/Dockerfile and run on loopback.

No Docker engine runs on this machine kind, so `make image` (deploy/build_image.py) builds
with podman and runc from a Debian base made with debootstrap; the image is reused while
its content tag (a hash of the Dockerfile, the build context and the base) still exists.
The image then runs as an operator would run it, with `--network host` against this
machine's PostgreSQL and Redis: migrations and the demo data as one-off containers (as the
compose `migrate` service and the k8s Job do), then the gateway on a free loopback port,
proxying to a demo upstream on the host. It must be ready, proxy, run as a non-root user
and, on SIGTERM, finish the request in flight and exit 0 with uvicorn's clean-shutdown log.
Skipped only when podman is not installed or cannot run here (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from fixtures.demo_data import DEMO_PASSWORD
from tests.conftest import require
from tests.live import free_port, wait_until
from tests.test_demo_upstream import PORT_COUNT, free_port_block, read_lines, start_upstream, stop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

BASE_DIR = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = BASE_DIR / "deploy" / "build_image.py"
CONTAINERS_CONF = BASE_DIR / "deploy" / "podman" / "containers.conf"
# A cold build makes the Debian base with debootstrap (about 2 minutes) and installs every
# dependency (about 2 minutes); a warm one reuses both and takes seconds.
BUILD_TIMEOUT_SECONDS = 1200
PODMAN_TIMEOUT_SECONDS = 60
SETUP_TIMEOUT_SECONDS = 180
READY_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 40
UPSTREAM_START_SECONDS = 15
NON_ROOT_UID = 10001
CONTAINER_PREFIX = "gateway-image-test"
SLOW_REQUEST_SECONDS = 2.0
IN_FLIGHT_HEAD_START_SECONDS = 0.5
CLEAN_SHUTDOWN_LINES = ("Application shutdown complete.", "Finished server process")
DEMO_OWNER = "owner@bakery-madrid.example"
SECRET_KEY = "container-test-only-secret-key-not-for-production-0123456789"


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = PODMAN_TIMEOUT_SECONDS, check: bool = True):
    return subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, check=check
    )


def podman_unusable() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        return "podman and runc are not installed (.ci/run installs podman, runc and debootstrap)"
    try:
        info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    except subprocess.TimeoutExpired:
        return "podman info did not answer"
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip()[-500:]}"
    return None


def container_database_url() -> str:
    """This run's own database: the one DATABASE_URL names (pytest-django uses test_<name>)."""
    from gateway_project.dev.cluster import POSTGRES_SCHEMES, CannotStart, ensure_database

    url = os.environ.get("DATABASE_URL", "")
    require(urlsplit(url).scheme in POSTGRES_SCHEMES, "DATABASE_URL does not name a PostgreSQL database")
    try:
        ensure_database(url)
    except CannotStart as exc:
        require(False, str(exc))
    return url


def container_key_prefix() -> str:
    return f"{os.environ.get('CACHE_KEY_PREFIX') or 'gwtest'}-image"


def delete_prefixed_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    finally:
        client.close()


def build_image() -> str:
    """`make image`'s script: the image reference (built, or reused when nothing changed)."""
    result = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT)],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def image() -> str:
    problem = podman_unusable()
    if problem:
        pytest.skip(problem)
    return build_image()


@pytest.fixture(scope="module")
def demo_upstream():
    """The demo services on a free block of host loopback ports (the container shares it)."""
    base = free_port_block(PORT_COUNT)
    process = start_upstream(base)
    try:
        read_lines(process, PORT_COUNT, UPSTREAM_START_SECONDS)
        yield base
    finally:
        stop(process)
        process.stdout.close()


@pytest.fixture(scope="module")
def container_env(demo_upstream, redis_url):
    prefix = container_key_prefix()
    env = {
        "DEBUG": "0",
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": container_database_url(),
        "REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": prefix,
        "CELERY_BROKER_URL": "memory://",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEMO_UPSTREAM_HOST": "127.0.0.1",
        "DEMO_UPSTREAM_BASE_PORT": str(demo_upstream),
        "UVICORN_LOG_LEVEL": "info",
        "LOG_LEVEL": "INFO",
    }
    yield env
    delete_prefixed_keys(redis_url, prefix)


def env_flags(env: dict[str, str]) -> list[str]:
    return [flag for name, value in env.items() for flag in ("--env", f"{name}={value}")]


def run_once(image: str, env: dict[str, str], *command: str) -> str:
    """A one-off container (migrate, load_demo), removed when it exits."""
    name = f"{CONTAINER_PREFIX}-{os.getpid()}-{command[-1].lstrip('-')}"
    flags = ["run", "--rm", "--name", name, "--runtime", "runc", "--network", "host", *env_flags(env)]
    try:
        result = podman(*flags, image, *command, timeout=SETUP_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        podman("rm", "--force", "--time", "0", name, check=False)
        raise
    assert result.returncode == 0, f"{' '.join(command)}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


class GatewayContainer:
    """The image's gateway on a free loopback port; only this container is stopped and removed."""

    def __init__(self, image: str, env: dict[str, str]) -> None:
        self.image = image
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = f"{CONTAINER_PREFIX}-{os.getpid()}-gateway"

    def start(self) -> GatewayContainer:
        # The image's own serve command, bound to loopback on a port this test chose. No
        # health timer: podman would need systemd for it (`podman healthcheck run` still works).
        serve = ["python", "-m", "gateway_project.serve", "--host", "127.0.0.1", "--port", str(self.port)]
        flags = ["run", "--detach", "--name", self.name, "--runtime", "runc", "--network", "host"]
        flags += ["--health-interval", "disable", *env_flags(self.env)]
        podman(*flags, self.image, *serve)
        return self

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def running(self) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return state.stdout.strip() == "true"

    def ready(self) -> bool:
        if not self.running():
            raise AssertionError(f"the gateway container exited:\n{self.logs()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/health/ready", timeout=2, trust_env=False).status_code == 200
        return False

    def host_pid(self) -> int:
        return int(podman("inspect", "--format", "{{.State.Pid}}", self.name).stdout.strip())

    def exit_code(self) -> int:
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


@pytest.fixture(scope="module")
def gateway(image, container_env):
    """Migrate and load the demo data with the image (as compose's `migrate` does), then serve."""
    run_once(image, container_env, "python", "manage.py", "migrate", "--noinput")
    run_once(image, container_env, "python", "manage.py", "load_demo")
    container = GatewayContainer(image, container_env)
    container.remove()  # a leftover of this name from an interrupted run
    try:
        container.start()
        wait_until(container.ready, READY_TIMEOUT_SECONDS, interval=0.2, message="/health/ready")
        yield container
    finally:
        container.remove()


def member_headers(gateway: GatewayContainer) -> dict[str, str]:
    login = httpx.post(
        f"{gateway.url}/api/v1/auth/login",
        json={"email": DEMO_OWNER, "password": DEMO_PASSWORD},
        timeout=10,
        trust_env=False,
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access']}"}


def process_uids(pid: int) -> list[int]:
    """Real, effective, saved and filesystem UIDs of a host process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("Uid:")]
    return [int(uid) for uid in line.split()[1:]]


# --- The tests (in order: the last one stops the container) -----------------------------


def test_the_image_is_ready_and_proxies_a_demo_request(gateway):
    ready = httpx.get(f"{gateway.url}/health/ready", timeout=5, trust_env=False)
    assert ready.status_code == 200, ready.text

    echo = httpx.get(
        f"{gateway.url}/api/v1/sales/echo", headers=member_headers(gateway), timeout=10, trust_env=False
    )

    assert echo.status_code == 200, echo.text
    body = echo.json()
    assert body["service"] == "sales" and body["path"] == "/echo"
    assert body["headers"]["x-tenant-id"] == "bakery-madrid"
    assert echo.headers["x-request-id"]


def test_the_gateway_process_runs_as_the_non_root_image_user(gateway):
    pid = gateway.host_pid()
    assert process_uids(pid) == [NON_ROOT_UID] * 4
    inside = podman("exec", gateway.name, "id", "-u").stdout.strip()
    assert inside == str(NON_ROOT_UID)
    # The code is the image's, owned by root: the app user can read it, not change it.
    write = podman("exec", gateway.name, "touch", "/app/manage.py", check=False)
    assert write.returncode != 0


def test_sigterm_finishes_the_request_in_flight_and_exits_cleanly(gateway):
    headers = member_headers(gateway)
    outcome: dict[str, object] = {}

    def slow_request() -> None:
        try:
            outcome["response"] = httpx.get(
                f"{gateway.url}/api/v1/sales/slow",
                params={"delay": SLOW_REQUEST_SECONDS},
                headers=headers,
                timeout=STOP_TIMEOUT_SECONDS,
                trust_env=False,
            )
        except httpx.HTTPError as exc:
            outcome["error"] = exc
        outcome["finished"] = time.monotonic()

    in_flight = threading.Thread(target=slow_request, daemon=True)
    in_flight.start()
    time.sleep(IN_FLIGHT_HEAD_START_SECONDS)  # well inside the upstream's delay
    sent = time.monotonic()
    podman("kill", "--signal", "TERM", gateway.name)
    exited = podman("wait", gateway.name, timeout=STOP_TIMEOUT_SECONDS).stdout.strip()
    in_flight.join(STOP_TIMEOUT_SECONDS)

    assert "error" not in outcome, outcome.get("error")
    assert outcome["response"].status_code == 200, outcome["response"].text
    assert outcome["finished"] > sent  # it was still in flight when SIGTERM arrived
    assert exited == "0" and gateway.exit_code() == 0
    assert time.monotonic() - sent < STOP_TIMEOUT_SECONDS
    logs = gateway.logs()
    for line in CLEAN_SHUTDOWN_LINES:
        assert line in logs, logs[-3000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{gateway.url}/health/live", timeout=2, trust_env=False)
