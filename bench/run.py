"""make bench: the gateway side by side with its peers in one run (SPEC section 13).

Scenarios, all on this machine, measured with wrk in interleaved rounds so drift cancels:
the upstream directly, a bare aiohttp reference proxy, nginx as a reverse proxy (when
installed), and the gateway minimal (no auth, no limits), full (RS256 JWT, Redis rate
limit that never rejects, metrics, JSON access log to a file), full without the rate
limit (the limiter's cost), full with 2 workers, full on a 3-master Redis Cluster instead
of the single Redis, full on a data plane without a database (its registry from a file),
and minimal with the httpx client. Then
N concurrent SSE clients and one alert, and config propagation between two instances.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.data_plane import data_plane_env
from bench.processes import PYTHON, ROOT, ChildProcesses, free_port, raise_fd_limit
from bench.redis_cluster import start_cluster
from bench.wrk import run_wrk, wrk_available

RESULTS = ROOT / "bench" / "results"
SCRATCH = ROOT / "var" / "bench"


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Benchmark the gateway against its peers.")
    parser.add_argument("--quick", action="store_true", help="about two minutes instead of about eight")
    parser.add_argument("--seconds", type=int, help="seconds per wrk run (wrk takes whole seconds)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per scenario")
    parser.add_argument("--sse-clients", type=int, help="concurrent SSE clients (default 10000)")
    parser.add_argument(
        "--scale",
        action="store_true",
        help="only the registry-at-scale scenario (bench/scale.py; its options after --)",
    )
    parser.add_argument(
        "--save-reference",
        action="store_true",
        help="also write bench/results/reference.{json,png} (the committed set)",
    )
    args, args.scale_argv = parser.parse_known_args(argv)
    if args.scale_argv and not args.scale:
        parser.error(f"unrecognized arguments: {' '.join(args.scale_argv)}")
    args.seconds = args.seconds or (2 if args.quick else 5)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.sse_clients = args.sse_clients or (2000 if args.quick else 10_000)
    return args


def redis_url() -> str | None:
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return url
    except Exception:
        return None


def gateway_env(redis: str | None, **extra) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "DEBUG": "0",
        "SECRET_KEY": (SCRATCH / "secret").read_text(),
        "GATEWAY_VAR_DIR": str(SCRATCH),
        "DATABASE_URL": f"sqlite:///{SCRATCH / 'bench.sqlite3'}",
        "RATE_LIMIT_DEFAULT": "",
        "LOG_LEVEL": "INFO",
        "ACCESS_LOG": "off",
        "CACHE_KEY_PREFIX": "bench",
        "ALLOWED_HOSTS": "*",
        "SSE_MAX_CONNECTIONS_PER_TENANT": "50000",
        "REDIS_URL": "",
    }
    if redis:
        env["REDIS_URL"] = redis
    env.update(extra)
    return env


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in open("/proc/cpuinfo")
                if line.startswith("model name")
            ),
            "unknown",
        ),
    }


def start_peers(children: ChildProcesses, log: Path) -> dict:
    """The upstream, the reference proxy and nginx's proxy; returns their URLs."""
    from bench.nginx import nginx_available, nginx_command, write_nginx_config

    upstream_port, nginx_proxy_port, reference_port = free_port(), free_port(), free_port()
    urls = {}
    if nginx_available():
        config = write_nginx_config(SCRATCH / "nginx", upstream_port, nginx_proxy_port)
        children.start(
            "nginx", nginx_command(config), ready_url=f"http://127.0.0.1:{upstream_port}/", log=log
        )
        urls["nginx-proxy"] = f"http://127.0.0.1:{nginx_proxy_port}/api/v1/open/items"
    else:
        children.start(
            "upstream",
            [PYTHON, "-m", "bench.upstream_app", "--port", str(upstream_port)],
            ready_url=f"http://127.0.0.1:{upstream_port}/",
            log=log,
        )
    upstream = f"http://127.0.0.1:{upstream_port}"
    urls["upstream"] = upstream
    children.start(
        "reference",
        [
            PYTHON,
            "-m",
            "bench.reference_proxy",
            "--port",
            str(reference_port),
            "--upstream",
            upstream,
        ],
        ready_url=f"http://127.0.0.1:{reference_port}/",
        log=log,
    )
    urls["reference-proxy"] = f"http://127.0.0.1:{reference_port}/api/v1/open/items"
    return urls


def start_gateway(children, name: str, env: dict, log: Path, workers: int = 1) -> tuple[str, object]:
    port = free_port()
    process = children.start(
        name,
        [PYTHON, "-m", "gateway_project.serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        ready_url=f"http://127.0.0.1:{port}/health/live",
        log=log,
    )
    return f"http://127.0.0.1:{port}", process


def scenarios_for(args, peers: dict, gateways: dict, token: str, quota_token: str) -> dict:
    auth = {"Authorization": f"Bearer {token}"}
    scenarios = {
        "upstream-direct": (peers["upstream"] + "/api/v1/open/items", {}),
        "reference-proxy": (peers["reference-proxy"], {}),
    }
    if "nginx-proxy" in peers:
        scenarios["nginx-proxy"] = (peers["nginx-proxy"], {})
    scenarios["gateway-minimal"] = (gateways["minimal"] + "/api/v1/open/items", {})
    scenarios["gateway-full"] = (gateways["full"] + "/api/v1/bench/items", auth)
    # The same request from a tenant whose plan has a monthly quota (SPEC section 20).
    quota_auth = {"Authorization": f"Bearer {quota_token}"}
    scenarios["gateway-full-quota"] = (gateways["full"] + "/api/v1/bench/items", quota_auth)
    scenarios["gateway-full-no-ratelimit"] = (gateways["full"] + "/api/v1/nolimit/items", auth)
    scenarios["gateway-full-cached"] = (gateways["full"] + "/api/v1/cached/items", auth)
    if "data-plane" in gateways:
        scenarios["gateway-data-plane-full"] = (gateways["data-plane"] + "/api/v1/bench/items", auth)
    if "full-2-workers" in gateways:
        scenarios["gateway-full-2-workers"] = (
            gateways["full-2-workers"] + "/api/v1/bench/items",
            auth,
        )
    if "full-redis-cluster" in gateways:
        scenarios["gateway-full-redis-cluster"] = (
            gateways["full-redis-cluster"] + "/api/v1/bench/items",
            auth,
        )
    if "httpx" in gateways:
        scenarios["gateway-minimal-httpx"] = (gateways["httpx"] + "/api/v1/open/items", {})
    return scenarios


def measure(scenarios: dict, connections: int, seconds: float, rounds: int) -> dict:
    samples: dict[str, list[dict]] = {name: [] for name in scenarios}
    for url, headers in scenarios.values():  # warm-up: connection pools and the token cache
        run_wrk(url, connections, 1, headers)
    for round_index in range(rounds):
        for name, (url, headers) in scenarios.items():
            result = run_wrk(url, connections, seconds, headers)
            samples[name].append(result)
            print(
                f"  c{connections} round {round_index + 1}/{rounds} {name:28s} {result['rps']:>10,.0f} req/s"
                f"  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
                + (f"  NON-2XX {result['non_2xx']}" if result["non_2xx"] else ""),
                flush=True,
            )
    return {
        name: {
            "rps": round(statistics.median(r["rps"] for r in runs), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 3),
            "non_2xx": sum(r["non_2xx"] for r in runs),
            "runs": runs,
        }
        for name, runs in samples.items()
    }


def ratios(results: dict) -> dict:
    s = results["scenarios"]
    out = {}
    if "gateway-full" in s and "reference-proxy" in s:
        out["gateway_full_over_reference_rps"] = round(
            s["gateway-full"]["c64"]["rps"] / s["reference-proxy"]["c64"]["rps"], 3
        )
        out["gateway_minimal_over_reference_rps"] = round(
            s["gateway-minimal"]["c64"]["rps"] / s["reference-proxy"]["c64"]["rps"], 3
        )
    if "nginx-proxy" in s:
        out["gateway_full_over_nginx_rps"] = round(
            s["gateway-full"]["c64"]["rps"] / s["nginx-proxy"]["c64"]["rps"], 3
        )
    out["added_p50_ms_full_at_c1"] = round(
        s["gateway-full"]["c1"]["p50_ms"] - s["upstream-direct"]["c1"]["p50_ms"], 3
    )
    out["added_p50_ms_minimal_at_c1"] = round(
        s["gateway-minimal"]["c1"]["p50_ms"] - s["upstream-direct"]["c1"]["p50_ms"], 3
    )
    full, nolimit = s["gateway-full"]["c64"]["rps"], s["gateway-full-no-ratelimit"]["c64"]["rps"]
    out["rate_limit_cost_us_per_request"] = round((1 / full - 1 / nolimit) * 1e6, 1)
    if "gateway-full-quota" in s:
        quota = s["gateway-full-quota"]["c64"]["rps"]
        out["quota_cost_us_per_request"] = round((1 / quota - 1 / full) * 1e6, 1)
    if "gateway-full-cached" in s:
        out["cached_over_full_rps"] = round(s["gateway-full-cached"]["c64"]["rps"] / full, 3)
    if "gateway-data-plane-full" in s:
        out["data_plane_over_full_rps"] = round(s["gateway-data-plane-full"]["c64"]["rps"] / full, 3)
    if "gateway-full-2-workers" in s:
        out["two_workers_over_one_rps"] = round(s["gateway-full-2-workers"]["c64"]["rps"] / full, 3)
    if "gateway-full-redis-cluster" in s:
        out["full_redis_cluster_over_single_redis_rps"] = round(
            s["gateway-full-redis-cluster"]["c64"]["rps"] / full, 3
        )
    if "gateway-minimal-httpx" in s:
        out["aiohttp_over_httpx_rps"] = round(
            s["gateway-minimal"]["c64"]["rps"] / s["gateway-minimal-httpx"]["c64"]["rps"], 3
        )
    return out


def print_table(results: dict) -> None:
    header = ("req/s c64", "p50 c64", "p99 c64", "p50 c1", "p99 c1")
    print(f"\n{'scenario':28s} {header[0]:>12s} " + " ".join(f"{column:>10s}" for column in header[1:]))
    for name, data in results["scenarios"].items():
        c64, c1 = data["c64"], data["c1"]
        print(
            f"{name:28s} {c64['rps']:>12,.0f} {c64['p50_ms']:>8.2f}ms {c64['p99_ms']:>8.2f}ms"
            f" {c1['p50_ms']:>8.3f}ms {c1['p99_ms']:>8.3f}ms"
        )
    print("\nratios:")
    for key, value in results["ratios"].items():
        print(f"  {key:40s} {value}")
    if results.get("sse"):
        print("\nsse:", json.dumps(results["sse"]))
    if results.get("propagation"):
        print("config propagation:", json.dumps(results["propagation"]))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.scale:
        from bench.scale import main as scale_main

        return scale_main([a for a in args.scale_argv if a != "--"] + (["--quick"] if args.quick else []))
    if not wrk_available():
        print(
            "make bench needs wrk: sudo apt-get install wrk   (nginx is optional: sudo apt-get install nginx)"
        )
        return 2
    raise_fd_limit()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    (SCRATCH / "secret").write_text(secrets.token_urlsafe(48))
    log = SCRATCH / "processes.log"
    redis = redis_url()
    children = ChildProcesses()
    started = time.time()
    try:
        peers = start_peers(children, log)
        base = gateway_env(None)
        setup = subprocess.run(
            [PYTHON, "-m", "bench.setup_registry", peers["upstream"]],
            env={**os.environ, **base, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        tokens = json.loads(setup.stdout.strip().splitlines()[-1])
        token = tokens["token"]
        gateways = {}
        gateways["minimal"], _ = start_gateway(children, "gateway-minimal", base, log)
        full_env = gateway_env(redis, ACCESS_LOG=str(SCRATCH / "access.log"))
        gateways["full"], full_process = start_gateway(children, "gateway-full", full_env, log)
        gateways["full-2-workers"], _ = start_gateway(children, "gateway-full-2w", full_env, log, workers=2)
        cluster = start_cluster(children, SCRATCH / "redis-cluster", log) if redis else None
        if cluster:
            cluster_env = {**full_env, "REDIS_URL": cluster, "CHANNEL_LAYER_URL": redis}
            cluster_env["CELERY_BROKER_URL"] = "filesystem://localhost/"
            gateways["full-redis-cluster"], _ = start_gateway(
                children, "gateway-full-cluster", cluster_env, log
            )
        dp_env = data_plane_env(full_env, SCRATCH)
        gateways["data-plane"], _ = start_gateway(children, "gateway-data-plane", dp_env, log)
        if not args.quick:
            gateways["httpx"], _ = start_gateway(
                children, "gateway-httpx", gateway_env(None, UPSTREAM_CLIENT="httpx"), log
            )
        scenarios = scenarios_for(args, peers, gateways, token, tokens["quota_token"])
        print(
            f"make bench: {len(scenarios)} scenarios, {args.rounds} rounds x {args.seconds}s, "
            f"redis={'yes' if redis else 'no'}",
            flush=True,
        )
        throughput = measure(scenarios, 64, args.seconds, args.rounds)
        latency = measure(scenarios, 1, args.seconds, args.rounds)
        results = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "settings": {
                "seconds": args.seconds,
                "rounds": args.rounds,
                "redis": bool(redis),
                "upstream": "nginx" if "nginx-proxy" in peers else "uvicorn",
            },
            "scenarios": {name: {"c64": throughput[name], "c1": latency[name]} for name in scenarios},
        }
        results["ratios"] = ratios(results)
        from bench.sse import run_sse_scenario

        print(f"sse: {args.sse_clients} clients ...", flush=True)
        results["sse"] = run_sse_scenario(gateways["full"], token, args.sse_clients, full_process.pid)
        if redis:
            propagation = subprocess.run(
                [PYTHON, "-m", "bench.propagation", gateways["full-2-workers"], peers["upstream"]],
                env={**os.environ, **full_env, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=True,
            )
            results["propagation"] = json.loads(propagation.stdout.strip().splitlines()[-1])
    finally:
        children.stop_all()
    results["duration_seconds"] = round(time.time() - started, 1)
    print_table(results)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    outputs = [RESULTS / f"{stamp}.json"]
    if args.save_reference:
        outputs.append(RESULTS / "reference.json")
    from bench.chart import draw_chart

    for path in outputs:
        path.write_text(json.dumps(results, indent=2))
        draw_chart(results, path.with_suffix(".png"))
    print(f"\nwrote {', '.join(str(p.relative_to(ROOT)) for p in outputs)} (+ .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
