"""A data-plane gateway as operators run it: its own process, no DATABASE_URL, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.live import free_port
from tests.live import wait_until as live_wait_until

__all__ = ["DataPlaneProcess", "metric_value", "wait_until"]

BASE_DIR = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10
# What the process gets from the test's environment; the rest (DATABASE_URL above all) it does not.
INHERITED = ("PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV")


class DataPlaneProcess:
    """`python -m gateway_project.serve` with GATEWAY_ROLE=data_plane; stopped by its PID."""

    def __init__(self, var_dir: Path, source: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = var_dir / f"data-plane-{self.port}.log"
        self.env = {name: os.environ[name] for name in INHERITED if name in os.environ}
        self.env.update(
            GATEWAY_ROLE="data_plane",
            GATEWAY_CONFIG_SOURCE=source,
            SECRET_KEY="data-plane-test-secret-key-0123456789abcdefghijklmnop",
            GATEWAY_VAR_DIR=str(var_dir),
            CACHE_KEY_PREFIX=f"{os.environ.get('CACHE_KEY_PREFIX', 'gwtest')}dp{self.port}",
            ACCESS_LOG="off",
            LOG_LEVEL="INFO",
            **env,
        )
        assert "DATABASE_URL" not in self.env
        self.process: subprocess.Popen | None = None

    def start(self) -> DataPlaneProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway_project.serve", "--port", str(self.port)],
            cwd=BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self._started, START_TIMEOUT_SECONDS, f"data plane did not start:\n{self.log()}")
        return self

    def _started(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"data plane exited {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/health/live", timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=5, trust_env=False, **kwargs)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_SECONDS)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> DataPlaneProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(condition, timeout: float, message: str = "condition") -> float:
    """`tests.live.wait_until`, returning how long it took (the "within 1 s" figures)."""
    started = time.monotonic()
    live_wait_until(condition, timeout, message=message)
    return time.monotonic() - started


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")
