"""Child processes of the benchmark: started with a readiness probe, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["ChildProcesses", "free_port", "raise_fd_limit"]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_fd_limit() -> int:
    """10,000 SSE clients need more than the default 1,024 descriptors (inherited by children)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1_048_576
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class ChildProcesses:
    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []

    def start(
        self,
        name: str,
        command: list[str],
        env: dict[str, str] | None = None,
        ready_url: str | None = None,
        timeout: float = 30,
        log: Path | None = None,
    ) -> subprocess.Popen:
        environment = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        output = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        process.bench_name = name
        self.children.append(process)
        if ready_url:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode} (see {log})")
                try:
                    httpx.get(ready_url, timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name} did not become ready at {ready_url}") from None
                    time.sleep(0.1)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.children):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # its own session: only what we started
                process.wait(5)
        self.children.clear()


PYTHON = sys.executable
