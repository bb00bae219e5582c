"""The cost of plugins (SPEC section 19): the full pipeline before the plugin system, with
it and no plugin configured, and with request-validator on, interleaved in one short run.

    python -m bench.plugins [--before <commit>] [--seconds 1] [--rounds 6]

`--before` (default: the parent of the commit that added `plugins/interface.py`) is
exported with `git archive` into the scratch directory and served from there, so both trees
run on the same machine, upstream and Redis. Each gateway has its own SQLite file and
Redis key prefix; the JWT keys are shared (one GATEWAY_VAR_DIR), so one token serves all
three.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import httpx

from bench.processes import PYTHON, ROOT, free_port, raise_fd_limit
from bench.wrk import run_wrk, wrk_available

SCRATCH = ROOT / "var" / "bench-plugins"
ITEMS = "/api/v1/bench/items?limit=10"
ENABLE_VALIDATOR = """
import django; django.setup()
from plugins.models import PluginConfig
from registry.models import Service
bench = Service.objects.get(slug="bench")
bench.openapi_path = "/openapi.json"
bench.save()
PluginConfig.objects.update_or_create(plugin="request-validator", service=bench)
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="", help="a commit without plugins (default: the last one)")
    parser.add_argument("--seconds", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    return parser.parse_args(argv)


def last_commit_without_plugins() -> str:
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "plugins/interface.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    return subprocess.run(
        ["git", "rev-parse", f"{added}^"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def export_tree(commit: str) -> Path:
    tree = SCRATCH / "before"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def environment(tree: Path, name: str, redis: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "DEBUG": "0",
        "SECRET_KEY": (SCRATCH / "secret").read_text(),
        "GATEWAY_VAR_DIR": str(SCRATCH),
        "DATABASE_URL": f"sqlite:///{SCRATCH / name}.sqlite3",
        "REDIS_URL": redis,
        "CACHE_KEY_PREFIX": f"bench-plugins-{name}",
        "RATE_LIMIT_DEFAULT": "",
        "ACCESS_LOG": str(SCRATCH / f"{name}-access.log"),
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "*",
    }


def start(command: list[str], env: dict, cwd: Path, ready: str, children: list) -> None:
    log = open(SCRATCH / "processes.log", "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    children.append(process)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(ready, timeout=1)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not start (see {SCRATCH / 'processes.log'})") from None
            time.sleep(0.1)


def gateway(tree: Path, name: str, upstream: str, redis: str, children: list, setup: str = "") -> tuple:
    env = environment(tree, name, redis)
    registry = subprocess.run(
        [PYTHON, "-m", "bench.setup_registry", upstream], env=env, cwd=tree, capture_output=True, text=True
    )
    if registry.returncode:
        raise RuntimeError(registry.stderr)
    if setup:
        subprocess.run([PYTHON, "-c", setup], env=env, cwd=tree, check=True)
    port = free_port()
    command = [PYTHON, "-m", "gateway_project.serve", "--port", str(port), "--workers", "1"]
    start(command, env, tree, f"http://127.0.0.1:{port}/health/live", children)
    return f"http://127.0.0.1:{port}{ITEMS}", json.loads(registry.stdout.strip().splitlines()[-1])["token"]


def measure(scenarios: dict, headers: dict, args) -> dict:
    for url in scenarios.values():  # warm: token cache, connection pools, compiled validators
        for _ in range(20):
            assert httpx.get(url, headers=headers).status_code == 200, url
    samples: dict[str, list] = {name: [] for name in scenarios}
    names = list(scenarios)
    for index in range(args.rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:  # rotated: no slot bias
            url = scenarios[name]
            result = run_wrk(url, args.connections, args.seconds, headers)
            samples[name].append(result)
            figures = f"{result['rps']:>9,.0f} req/s  p50 {result['p50_ms']:.2f} ms"
            print(f"  round {index + 1} {name:34s} {figures}  non-2xx {result['non_2xx']}", flush=True)
    return {
        name: {
            "rps": statistics.median(r["rps"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "rounds": [round(r["rps"]) for r in runs],
        }
        for name, runs in samples.items()
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if not wrk_available():
        print("needs wrk: sudo apt-get install wrk")
        return 2
    raise_fd_limit()
    before = args.before or last_commit_without_plugins()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    (SCRATCH / "secret").write_text(secrets.token_urlsafe(48))
    redis = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    children: list[subprocess.Popen] = []
    try:
        port = free_port()
        upstream = f"http://127.0.0.1:{port}"
        start([PYTHON, "-m", "bench.upstream_app", "--port", str(port)], os.environ, ROOT, upstream, children)
        old_tree = export_tree(before)
        scenarios = {}
        scenarios[f"full, before plugins ({before[:7]})"], token = gateway(
            old_tree, "before", upstream, redis, children
        )
        scenarios["full, plugins, none configured"], _ = gateway(ROOT, "none", upstream, redis, children)
        scenarios["full, request-validator on"], _ = gateway(
            ROOT, "validator", upstream, redis, children, ENABLE_VALIDATOR
        )
        headers = {"Authorization": f"Bearer {token}"}
        refused = httpx.get(scenarios["full, request-validator on"].replace("=10", "=0"), headers=headers)
        assert refused.status_code == 400, "the validator is not validating: no figures for it"
        results = measure(scenarios, headers, args)
    finally:
        for process in children:
            process.terminate()
        for process in children:
            process.wait(15)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
