"""make bench-tls: the full pipeline over plain HTTP/1.1, HTTP/1.1 over TLS and HTTP/2 over TLS.

The load generator is h2load (Debian `nghttp2-client`), which speaks HTTP/1.1 (`--h1`) and
HTTP/2 by ALPN over TLS; 64 connections, one request in flight on each (HTTP/2 gets no
multiplexing advantage). Gateways, one worker each, full pipeline: uvicorn (plain and TLS;
HTTP/1.1 only) and granian (plain and TLS; HTTP/1.1 and HTTP/2). The certificate is made at
run time under var/bench and never committed. Interleaved rounds; the ratios are over the
same server's plain HTTP/1.1 figure in the same round.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench.ab import bench_peers, interleave
from bench.run import SCRATCH, gateway_env, redis_url, start_gateway

_CONNECTIONS = 64


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="seconds per h2load run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--json", help="also write the samples to this file")
    return parser.parse_args(argv)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its PKCS#8 key (granian reads only PKCS#8)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "gateway.pem", directory / "gateway.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def run_h2load(url: str, seconds: int, headers: dict[str, str], http1: bool) -> dict:
    command = ["h2load", f"-c{_CONNECTIONS}", "-m1", "-t2", f"-D{seconds}", "--warm-up-time=1"]
    command += ["--h1"] if http1 else []
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = re.search(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", output)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", output)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", output)
    protocol = re.search(r"Application protocol: (\S+)", output)
    if not rps or not done:
        raise RuntimeError(f"unreadable h2load output for {url}:\n{output}")
    return {
        "rps": float(rps.group(1)),
        "mean_ms": _millis(mean.group(1)) if mean else None,
        "failed": int(done.group(3)),
        "protocol": protocol.group(1) if protocol else "",
    }


def _millis(text: str) -> float:
    value, unit = re.match(r"([0-9.]+)(us|ms|s)$", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def start_tls_gateways(children, redis, cert: Path, key: Path, log) -> dict[str, str]:
    """{server-mode: base url} for uvicorn and granian, plain and TLS, full pipeline."""
    tls = {"GATEWAY_TLS_CERT_FILE": str(cert), "GATEWAY_TLS_KEY_FILE": str(key)}
    urls = {}
    for server in ("uvicorn", "granian"):
        for mode, extra in (("plain", {}), ("tls", tls)):
            env = gateway_env(
                redis, GATEWAY_SERVER=server, ACCESS_LOG=str(SCRATCH / f"access-{server}-{mode}.log")
            )
            env.update(extra)
            start = _start_tls if extra else start_gateway
            urls[f"{server}-{mode}"], _ = start(children, f"{server}-{mode}", env, log)
    return urls


def _start_tls(children, name: str, env: dict, log):
    """start_gateway probes readiness over plain HTTP; a TLS listener is probed with verify off."""
    from bench.processes import PYTHON, free_port

    port = free_port()
    command = [PYTHON, "-m", "gateway_project.serve", "--port", str(port), "--workers", "1"]
    process = children.start(name, command, env=env, log=log)
    url = f"https://127.0.0.1:{port}"
    _wait_ready(url + "/health/live", process)
    return url, process


def _wait_ready(url: str, process, timeout: float = 30) -> None:
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the TLS gateway exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1, verify=False)  # noqa: S501 - a readiness probe of our own listener
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the TLS gateway did not become ready at {url}")


def scenarios_for(urls: dict[str, str]) -> dict[str, tuple[str, bool]]:
    """{name: (url, HTTP/1.1?)}; HTTP/2 only where the server speaks it (granian over TLS)."""
    return {
        "uvicorn http/1.1": (urls["uvicorn-plain"], True),
        "uvicorn tls http/1.1": (urls["uvicorn-tls"], True),
        "granian http/1.1": (urls["granian-plain"], True),
        "granian tls http/1.1": (urls["granian-tls"], True),
        "granian tls h2": (urls["granian-tls"], False),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if not shutil.which("h2load"):
        print("bench.tls needs h2load: sudo apt-get install nghttp2-client")
        return 2
    with bench_peers("tls-processes.log") as (children, _, token, log):
        cert, key = self_signed(SCRATCH / "tls")
        scenarios = scenarios_for(start_tls_gateways(children, redis_url(), cert, key, log))
        headers = {"Authorization": f"Bearer {token}"}

        def run_one(name: str) -> dict:
            base, http1 = scenarios[name]
            return run_h2load(base + "/api/v1/bench/items", args.seconds, headers, http1)

        samples = interleave(run_one, list(scenarios), args.rounds, "tls")
    print("\nmedian req/s (64 connections) and over the same server's plain HTTP/1.1:")
    for name, runs in samples.items():
        plain = samples[f"{name.split()[0]} http/1.1"]
        ratio = statistics.median(r["rps"] / p["rps"] for r, p in zip(runs, plain, strict=True))
        rps = statistics.median(r["rps"] for r in runs)
        print(f"  {name:22s} {rps:>10,.0f} req/s  x{ratio:.2f}  failed {sum(r['failed'] for r in runs)}")
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
