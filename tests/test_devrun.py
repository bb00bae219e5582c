"""`make run` (gateway_project.dev.devrun): starts everything, says how to log in, stops everything."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from fixtures.demo_data import DEMO_PASSWORD
from fixtures.demo_ports import demo_port_map
from gateway_project.dev import devrun
from tests.live import demo_admin_session
from tests.test_demo_upstream import free_port_block

BASE_DIR = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 150
STOP_TIMEOUT_SECONDS = 40
# What the test process itself carries (pytest-django, settings_test) that `make run` must not.
INHERITED_TEST_SETTINGS = (
    "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECRET_KEY",
    "CACHE_KEY_PREFIX", "DEBUG", "NOMINATIM_URL", "WHATSAPP_API_URL", "GATEWAY_HOST",
)  # fmt: skip


class OutputReader:
    """Collects a process's output on a thread (so its pipe never fills) until EOF."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for raw in stream:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, prefix: str, timeout: float, *, anywhere: bool = False) -> str:
        """The first line starting with `prefix` (containing it, with `anywhere`)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self.lines if _matches(line, prefix, anywhere)), None)
                if found or not self._changed.wait(max(0, deadline - time.monotonic())):
                    break
        assert found, f"no {prefix!r} within {timeout} s; output:\n" + "\n".join(self.lines[-60:])
        return found

    def snapshot(self) -> list[str]:
        with self._changed:
            return list(self.lines)

    def wait_for_eof(self, timeout: float) -> bool:
        """EOF only comes once every process holding the pipe (all descendants) is gone."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _matches(line: str, fragment: str, anywhere: bool) -> bool:
    return fragment in line if anywhere else line.startswith(fragment)


# What a person reads in `make run`: every log record as gateway_project.logs.ConsoleFormatter
# writes it. A line naming a level, or opening like a JSON object or Celery's "[date: LEVEL"
# prefix, is a log record and must be in that format.
CONSOLE_RECORD = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+  \S")
LOOKS_LIKE_A_RECORD = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b|^\s*[{\[]")


def console_defects(lines: list[str]) -> list[str]:
    """Why a stretch of `make run` output is hard to read: repeats, warnings, foreign formats."""
    printed = Counter(line for line in lines if line.strip())
    repeated = [f"printed {count} times: {line}" for line, count in printed.items() if count > 1]
    warnings = [f"warning: {line}" for line in lines if "warning" in line.lower()]
    foreign = [
        f"not the console format: {line}"
        for line in lines
        if LOOKS_LIKE_A_RECORD.search(line) and not CONSOLE_RECORD.match(line)
    ]
    return repeated + warnings + foreign


def living_members(pgid: int) -> list[int]:
    """PIDs in the process group that are not zombies (an orphan waits for init to reap it)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def group_alive(pgid: int, grace: float = 5.0) -> bool:
    """Whether any process of the group is still running after `grace` seconds."""
    deadline = time.monotonic() + grace
    while living_members(pgid):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def proxied_echo(gateway: str) -> None:
    """What the banner's "Try it" does: log in as the demo owner, call a demo service."""
    login = httpx.post(
        f"{gateway}/api/v1/auth/login",
        json={"email": "owner@bakery-madrid.example", "password": DEMO_PASSWORD},
        trust_env=False,
    )
    assert login.status_code == 200, login.text
    member = {"Authorization": f"Bearer {login.json()['access']}"}
    echo = httpx.get(f"{gateway}/api/v1/sales/echo", headers=member, trust_env=False)
    assert echo.status_code == 200 and echo.json()["headers"]["x-tenant-id"] == "bakery-madrid"


def check_what_make_run_serves(gateway: str) -> None:
    """The first things a user opens: the admin as the demo staff user, the browsable
    management API (and its refusals), Swagger UI, and a proxied call with a demo login."""
    with demo_admin_session(gateway) as staff:
        admin_index = staff.get("/admin/")
        assert admin_index.status_code == 200 and "Registry, tenants and alerts" in admin_index.text
        browsable = staff.get("/api/manage/services/", headers={"Accept": "text/html"})
        assert browsable.status_code == 200
        assert browsable.headers["content-type"].startswith("text/html")
        assert "/api/v1/sales" in browsable.text
    anonymous = httpx.get(f"{gateway}/api/manage/services/", trust_env=False)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    login = httpx.post(
        f"{gateway}/api/v1/auth/login",
        json={"email": "owner@bakery-madrid.example", "password": DEMO_PASSWORD},
        trust_env=False,
    )
    assert login.status_code == 200, login.text
    member = {"Authorization": f"Bearer {login.json()['access']}"}
    refused = httpx.get(f"{gateway}/api/manage/services/", headers=member, trust_env=False)
    assert (refused.status_code, refused.headers["content-type"]) == (403, "application/problem+json")
    docs = httpx.get(f"{gateway}/api/docs/", trust_env=False)
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    stylesheet = httpx.get(f"{gateway}/static/admin/css/base.css", trust_env=False)
    assert stylesheet.status_code == 200 and stylesheet.headers["content-type"].startswith("text/css")
    assert int(stylesheet.headers["content-length"]) == len(stylesheet.content) > 0
    echo = httpx.get(f"{gateway}/api/v1/sales/echo", headers=member, trust_env=False)
    assert echo.status_code == 200 and echo.json()["headers"]["x-tenant-id"] == "bakery-madrid"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_make_run_starts_everything_and_ctrl_c_stops_every_child(tmp_path):
    # Given: a fresh var dir and free ports.
    upstream_count = len(demo_port_map(0))
    upstream_base = free_port_block(upstream_count + 1)
    gateway_port = upstream_base + upstream_count
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_TEST_SETTINGS}
    env.update(
        GATEWAY_VAR_DIR=str(tmp_path / "var"),
        GATEWAY_PORT=str(gateway_port),
        DEMO_UPSTREAM_HOST="127.0.0.1",
        DEMO_UPSTREAM_BASE_PORT=str(upstream_base),
        DEBUG="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway_project.dev.devrun"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = OutputReader(process)
    try:
        # When: it is ready.
        output.wait_for(devrun.READY_MARKER, READY_TIMEOUT_SECONDS)
        items = output.wait_for("devrun: pids ", 5).removeprefix("devrun: pids ").split()
        pids = {name: int(pid) for name, pid in (item.split("=") for item in items)}

        # Then: up to ready and through one proxied request, the console reads cleanly: each
        # line once, no warning, every log record in the one console format.
        gateway = f"http://127.0.0.1:{gateway_port}"
        proxied_echo(gateway)
        output.wait_for("/api/v1/sales/echo", 5, anywhere=True)  # its access-log record
        assert console_defects(output.snapshot()) == [], output.text

        # And: the admin answers, the demo upstream runs, and the banner says how to log in.
        with httpx.Client(timeout=10, trust_env=False) as client:
            assert client.get(f"{gateway}/admin/login/").status_code == 200
            assert client.get(f"http://127.0.0.1:{upstream_base + 1}/health").status_code == 200
        check_what_make_run_serves(gateway)
        for expected in (
            "admin / admin-demo",
            "owner@bakery-madrid.example / bakery-demo",
            "viewer@bakery-madrid.example / bakery-demo",
            f"{gateway}/admin/",
            f"{gateway}/api/manage/",
            f"{gateway}/api/docs/",
            f"{gateway}/dashboard/",
            f"{gateway}/health",
            f"curl -s {gateway}/api/v1/sales/echo",
        ):
            assert expected in output.text
        assert set(pids) == {"demo-upstream", "celery", "gateway"}
        assert (tmp_path / "var" / "gateway.sqlite3").exists()
        assert all(living_members(pid) for pid in pids.values())
        # Browsing the admin and the API docs (static files included) warns about nothing, and
        # a refused management call is logged once, in the console format.
        for refusal in ("Unauthorized: /api/manage/services/", "Forbidden: /api/manage/services/"):
            line = output.wait_for(refusal, 5, anywhere=True)
            assert CONSOLE_RECORD.match(line), line
            assert sum(refusal in line for line in output.snapshot()) == 1, output.text
        assert "StreamingHttpResponse" not in output.text

        # When: Ctrl-C.
        process.send_signal(signal.SIGINT)

        # Then: it exits cleanly and every process it started, with their helpers, is gone.
        assert process.wait(STOP_TIMEOUT_SECONDS) == 0
        assert output.wait_for_eof(10), "a descendant still holds the output pipe"
        assert "devrun: stopped" in output.text
        assert not [name for name, pid in pids.items() if group_alive(pid)]
        ports = [gateway_port, *demo_port_map(upstream_base).values()]
        assert all(port_is_free(port) for port in ports)
    finally:
        if process.poll() is None:
            process.terminate()  # devrun stops its children itself
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()  # its children get SIGTERM through PR_SET_PDEATHSIG
                process.wait(5)


# --- Supervision, with small stand-in processes ----------------------------------------

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
DIES_SOON = [sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit(3)"]
# Ignores SIGTERM and leaves a grandchild in its process group.
STUBBORN = [
    sys.executable, "-c",
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "time.sleep(60)\n",
]  # fmt: skip


def config_on_free_ports(tmp_path) -> devrun.RunConfig:
    base = free_port_block(len(demo_port_map(0)) + 1)
    return devrun.RunConfig(
        host="127.0.0.1",
        port=base,
        var_dir=tmp_path,
        upstream_host="127.0.0.1",
        upstream_ports=demo_port_map(base + 1),
    )


@pytest.fixture
def stand_ins(monkeypatch):
    """Replace the real commands: setup succeeds at once, services are the given commands.

    Returns the list of every Child devrun starts, to check afterwards that none is left.
    """
    started: list[devrun.Child] = []

    class RecordedChild(devrun.Child):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    def use(*services: list[str]) -> list[devrun.Child]:
        no_op = [sys.executable, "-c", "pass"]
        monkeypatch.setattr(devrun, "Child", RecordedChild)
        monkeypatch.setattr(devrun, "setup_commands", lambda: [("setup", no_op)])
        named = [(f"service-{i}", command) for i, command in enumerate(services)]
        monkeypatch.setattr(devrun, "service_commands", lambda config: named)
        monkeypatch.setattr(devrun, "readiness_urls", lambda config: [])
        return started

    return use


def assert_all_gone(children: list[devrun.Child]) -> None:
    assert children
    assert all(child.process.returncode is not None for child in children)
    assert not [child.name for child in children if group_alive(child.pid)]


def test_a_child_dying_stops_the_rest_and_exits_nonzero(tmp_path, stand_ins, capsys):
    children = stand_ins(SLEEPER, DIES_SOON)
    started = time.monotonic()

    code = devrun.run(config_on_free_ports(tmp_path), threading.Event())

    assert code == 1
    assert time.monotonic() - started < 10
    captured = capsys.readouterr()
    assert "service-1" in captured.err and "exited unexpectedly with code 3" in captured.err
    assert [child.name for child in children] == ["setup", "service-0", "service-1"]
    assert_all_gone(children)


def test_a_child_ignoring_sigterm_is_killed_with_its_own_children(tmp_path):
    child = devrun.Child("stubborn", STUBBORN, dict(os.environ), tmp_path)
    time.sleep(0.5)  # let it install its handler and start the grandchild
    started = time.monotonic()

    devrun.stop_children([child], timeout=1)

    assert time.monotonic() - started < 5
    assert child.process.returncode == -signal.SIGKILL
    assert not group_alive(child.pid)


def test_busy_ports_are_reported_before_anything_starts(tmp_path, stand_ins, capsys):
    children = stand_ins(SLEEPER)
    config = config_on_free_ports(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", config.port))
        holder.listen()
        assert devrun.run(config, threading.Event()) == 1
    captured = capsys.readouterr()
    assert f"127.0.0.1:{config.port}" in captured.err
    assert children == []


def test_a_stop_request_before_ready_exits_cleanly(tmp_path, stand_ins, monkeypatch):
    children = stand_ins(SLEEPER)
    monkeypatch.setattr(devrun, "readiness_urls", lambda config: ["http://127.0.0.1:9/never"])
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()

    assert devrun.run(config_on_free_ports(tmp_path), stop) == 0
    assert [child.name for child in children] == ["setup", "service-0"]
    assert_all_gone(children)


def test_a_failing_setup_step_exits_nonzero_before_starting_services(
    tmp_path, stand_ins, monkeypatch, capsys
):
    children = stand_ins(SLEEPER)
    failing = [sys.executable, "-c", "raise SystemExit(2)"]
    monkeypatch.setattr(devrun, "setup_commands", lambda: [("migrate", failing)])

    assert devrun.run(config_on_free_ports(tmp_path), threading.Event()) == 1
    assert "migrate failed with exit code 2" in capsys.readouterr().err
    assert [child.name for child in children] == ["migrate"]


def test_children_talk_to_the_fake_third_parties_unless_configured(tmp_path, monkeypatch):
    config = config_on_free_ports(tmp_path)
    monkeypatch.delenv("NOMINATIM_URL", raising=False)
    monkeypatch.setenv("WHATSAPP_API_URL", "https://graph.example/v20.0")

    env = devrun.child_environment(config)

    assert env["NOMINATIM_URL"] == f"http://127.0.0.1:{config.upstream_ports['fakes']}"
    assert env["WHATSAPP_API_URL"] == "https://graph.example/v20.0"
    assert env["GATEWAY_VAR_DIR"] == str(tmp_path)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(BASE_DIR)
