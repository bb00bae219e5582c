"""make bench-ab: A/B of the gateway's server, upstream client and Redis client (SPEC section 22).

Pairs, each measured in interleaved rounds in one run so that the machine's drift cancels
(rely on the ratios, not on the absolute figures):
- server: uvicorn with the gateway's protocol (gateway_project/serve.py) vs granian (ASGI);
- upstream client: aiohttp vs pyreqwest (UPSTREAM_CLIENT=pyreqwest), both under uvicorn;
- Redis client for the limiter: the RESP pipe (proxy/redis_pipe.py) vs redis-py + hiredis on
  one connection and on its default pool, the limiter's EVALSHA under 64 concurrent callers.
Every gateway runs one worker, minimal (no auth, no limits) and full (RS256 JWT, Redis rate
limit, metrics, JSON access log); wrk at 64 connections and at 1. Ratios are B over A per
round, then their median; > 1 means B is faster (req/s) or, for p50, that B adds more.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys

from bench.processes import PYTHON, ROOT, ChildProcesses, free_port
from bench.run import SCRATCH, gateway_env, redis_url, start_gateway, start_peers
from bench.wrk import run_wrk, wrk_available

# (label, server, UPSTREAM_CLIENT); the first of each pair is A.
GATEWAYS = (
    ("uvicorn", "uvicorn", "aiohttp"),
    ("granian", "granian", "aiohttp"),
    ("pyreqwest", "uvicorn", "pyreqwest"),
    ("granian+pyreqwest", "granian", "pyreqwest"),
)
PAIRS = (
    ("server", "uvicorn", "granian"),
    ("upstream client", "uvicorn", "pyreqwest"),
    ("both options", "uvicorn", "granian+pyreqwest"),
)
REDIS_CLIENTS = ("pipe", "redispy-1", "redispy-pool")
GRANIAN_OPTIONS = ("--interface", "asgi", "--loop", "uvloop", "--runtime-mode", "st", "--http", "1")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--skip-http", action="store_true", help="only the Redis client A/B")
    parser.add_argument("--skip-redis", action="store_true", help="only the HTTP A/Bs")
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args(argv)


def start_granian(children: ChildProcesses, name: str, env: dict, log) -> str:
    port = free_port()
    command = [PYTHON, "-m", "granian", *GRANIAN_OPTIONS, "--workers", "1", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log", "--backlog", "2048"]
    url = f"http://127.0.0.1:{port}"
    children.start(
        name, [*command, "gateway_project.asgi:application"], env=env, ready_url=url + "/health/live", log=log
    )
    return url


def start_gateways(children: ChildProcesses, redis: str | None, log) -> dict[str, dict[str, str]]:
    """{label: {"minimal": base url, "full": base url}} for every gateway of GATEWAYS."""
    urls: dict[str, dict[str, str]] = {}
    for label, server, client in GATEWAYS:
        envs = {
            "minimal": gateway_env(None, UPSTREAM_CLIENT=client),
            "full": gateway_env(
                redis, UPSTREAM_CLIENT=client, ACCESS_LOG=str(SCRATCH / f"access-{label}.log")
            ),
        }
        urls[label] = {}
        for mode, env in envs.items():
            name = f"{label}-{mode}"
            if server == "granian":
                urls[label][mode] = start_granian(children, name, env, log)
            else:
                urls[label][mode], _ = start_gateway(children, name, env, log)
    return urls


def http_scenarios(peers: dict, gateways: dict, token: str) -> dict[str, tuple[str, dict]]:
    auth = {"Authorization": f"Bearer {token}"}
    scenarios = {
        "upstream-direct": (peers["upstream"] + "/api/v1/open/items", {}),
        "reference-proxy": (peers["reference-proxy"], {}),
    }
    for label, modes in gateways.items():  # pair members side by side: minimal ones, then full ones
        scenarios[f"{label}-minimal"] = (modes["minimal"] + "/api/v1/open/items", {})
    for label, modes in gateways.items():
        scenarios[f"{label}-full"] = (modes["full"] + "/api/v1/bench/items", auth)
    return scenarios


def interleave(run_one, names, rounds: int, label: str) -> dict[str, list[dict]]:
    """Every name once per round, `rounds` times, the order reversed every other round so
    that a pair's members sit side by side and neither always runs first: {name: [results]}."""
    samples: dict[str, list[dict]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):  # A B ... then ... B A
            result = run_one(name)
            samples[name].append(result)
            print(f"  {label} round {index + 1}/{rounds} {name:22s} {json.dumps(result)}", flush=True)
    return samples


def measure_http(scenarios: dict, seconds: float, rounds: int) -> dict[str, dict[str, list[dict]]]:
    for url, headers in scenarios.values():  # warm-up: pools, the token cache, the snapshot
        run_wrk(url, 64, 1, headers)

    def wrk_for(connections: int):
        def run_one(name: str) -> dict:
            url, headers = scenarios[name]
            result = run_wrk(url, connections, seconds, headers)
            return {k: result[k] for k in ("rps", "p50_ms", "p99_ms", "non_2xx")}

        return run_one

    return {f"c{c}": interleave(wrk_for(c), list(scenarios), rounds, f"c{c}") for c in (64, 1)}


def measure_redis(url: str, seconds: float, rounds: int) -> dict[str, list[dict]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "gateway_project.settings"}
    env.setdefault("SECRET_KEY", "bench-ab")

    def run_one(client: str) -> dict:
        command = [PYTHON, "-m", "bench.redis_clients", client, url, str(seconds), "64"]
        output = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        return json.loads(output.stdout.strip().splitlines()[-1])

    return interleave(run_one, REDIS_CLIENTS, rounds, "redis")


def per_round(a: list[dict], b: list[dict], key: str) -> list[float]:
    return [round(y[key] / x[key], 3) for x, y in zip(a, b, strict=True)]


def http_ratios(samples: dict) -> dict:
    """Per pair and mode: B/A req/s at 64 connections (per round and median), added p50 at 1."""
    c64, c1 = samples["c64"], samples["c1"]
    direct = statistics.median(r["p50_ms"] for r in c1["upstream-direct"])
    out = {}
    for pair, a, b in PAIRS:
        for mode in ("minimal", "full"):
            rounds = per_round(c64[f"{a}-{mode}"], c64[f"{b}-{mode}"], "rps")
            added = {
                name: round(statistics.median(r["p50_ms"] for r in c1[f"{name}-{mode}"]) - direct, 3)
                for name in (a, b)
            }
            out[f"{pair}: {b}/{a} {mode}"] = {
                "rps_ratio_median": round(statistics.median(rounds), 3),
                "rps_ratio_rounds": rounds,
                "added_p50_ms_c1": added,
            }
    for label, *_ in GATEWAYS:
        for mode in ("minimal", "full"):
            rounds = per_round(c64["reference-proxy"], c64[f"{label}-{mode}"], "rps")
            out[f"{label}-{mode} over reference"] = {
                "rps_ratio_median": round(statistics.median(rounds), 3),
                "rps_ratio_rounds": rounds,
            }
    return out


def redis_ratios(samples: dict) -> dict:
    return {
        f"redis: {client}/pipe": {
            "calls_ratio_median": round(
                statistics.median(rounds := per_round(samples["pipe"], samples[client], "calls_per_s")), 3
            ),
            "calls_ratio_rounds": rounds,
        }
        for client in REDIS_CLIENTS[1:]
    }


def reset_scratch() -> None:
    """An empty var/bench with a new secret key: each run starts from a fresh registry."""
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    (SCRATCH / "secret").write_text(secrets.token_urlsafe(48))


def prepare_registry(upstream: str) -> str:
    """The benchmark's services, policy and user in the scratch database; returns the token."""
    setup = subprocess.run(
        [PYTHON, "-m", "bench.setup_registry", upstream],
        env={**os.environ, **gateway_env(None), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(setup.stdout.strip().splitlines()[-1])["token"]


@contextlib.contextmanager
def bench_peers(log_name: str):
    """The upstream and the reference proxy, a fresh registry pointing at them and a log under
    var/bench: yields (children, peers, token, log); every child stops on the way out."""
    children = ChildProcesses()
    reset_scratch()
    try:
        peers = start_peers(children, SCRATCH / "peers.log")
        token = prepare_registry(peers["upstream"])
        yield children, peers, token, SCRATCH / log_name
    finally:
        children.stop_all()


def run_http(args, redis: str | None) -> dict:
    with bench_peers("ab-processes.log") as (children, peers, token, log):
        scenarios = http_scenarios(peers, start_gateways(children, redis, log), token)
        print(f"bench.ab: {len(scenarios)} scenarios, {args.rounds} rounds x {args.seconds}s", flush=True)
        samples = measure_http(scenarios, args.seconds, args.rounds)
    return {"samples": samples, "ratios": http_ratios(samples)}


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.skip_http and not wrk_available():
        print("bench.ab needs wrk: sudo apt-get install wrk")
        return 2
    redis = redis_url()
    results: dict = {"seconds": args.seconds, "rounds": args.rounds, "redis_url": redis}
    if not args.skip_http:
        results["http"] = run_http(args, redis)
    if redis and not args.skip_redis:
        samples = measure_redis(redis, args.seconds, args.rounds)
        results["redis"] = {"samples": samples, "ratios": redis_ratios(samples)}
    print("\nratios (B/A; req/s per round, then the median):")
    for section in ("http", "redis"):
        for name, value in results.get(section, {}).get("ratios", {}).items():
            print(f"  {name:42s} {json.dumps(value)}")
    if args.json:
        with open(args.json, "w") as output:
            json.dump(results, output, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
