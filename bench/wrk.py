"""Running wrk and reading its numbers."""

from __future__ import annotations

import re
import shutil
import subprocess

__all__ = ["WrkResult", "run_wrk", "wrk_available"]

# A run whose output cannot be read (seen once: no 99th percentile line) is repeated.
_ATTEMPTS = 2
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _millis(text: str) -> float:
    match = re.match(r"([0-9.]+)(us|ms|s|m)$", text.strip())
    if not match:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, connections: int, seconds: float, headers: dict[str, str] | None = None) -> dict:
    threads = 1 if connections < 4 else 2
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    for _ in range(_ATTEMPTS):
        output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
        try:
            return _parse(output)
        except (AttributeError, KeyError, ValueError) as exc:
            error = exc
    raise RuntimeError(f"unreadable wrk output for {url} ({error!r}):\n{output}") from error


def _parse(output: str) -> dict:
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)(?:\.0+)?%\s+(\S+)\s*$", output, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", output).group(1)),
        "p50_ms": _millis(percentiles["50"]),
        "p99_ms": _millis(percentiles["99"]),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


WrkResult = dict
