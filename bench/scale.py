"""The registry at scale (SPEC section 23): `make bench-scale` or `python -m bench.run --scale`.

On PostgreSQL (`BENCH_SCALE_DATABASE_URL`, whose `scale-` objects it replaces) and Redis,
it bulk-creates 20,000 services, 5,000 tenants and 100,000 API keys, then reports:
- the full compile (time, snapshot memory, per-object costs) and one delta per change kind
  (time, in this process);
- propagation to a second gateway instance of a read-only toggle, a new API key, a deleted
  API key and a new service (median and max over several, each timed from the save until
  the second instance answers differently);
- p99 of proxied requests (wrk) while a change is saved every 100 ms, against idle, in
  three interleaved rounds; and p99 while both instances rebuild their whole snapshot.
Prints the figures and writes `bench/results/scale-<time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import statistics
import sys
import threading
import time
from datetime import UTC, datetime

from bench.processes import PYTHON, ROOT, ChildProcesses, free_port
from bench.scale_registry import ScaleSize, api_key_secret, service_slug, tenant_slug

RESULTS = ROOT / "bench" / "results"
SCRATCH = ROOT / "var" / "bench-scale"
FULL = ScaleSize(services=20_000, tenants=5_000, api_keys=100_000)
QUICK = ScaleSize(services=2_000, tenants=500, api_keys=10_000)
PROPAGATION_TIMEOUT_SECONDS = 10
BURST_INTERVAL_SECONDS = 0.1
P99_ROUNDS = 3
STARTUP_TIMEOUT_SECONDS = 300


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Config propagation at SPEC 23's registry sizes.")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK} instead of {FULL}")
    parser.add_argument("--attempts", type=int, default=5, help="propagation samples per change kind")
    parser.add_argument("--seconds", type=float, default=5, help="seconds per wrk run (idle, burst)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_SCALE_DATABASE_URL", ""))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    return parser.parse_args(argv)


def environment(args) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "DEBUG": "0",
        "SECRET_KEY": (SCRATCH / "secret").read_text(),
        "GATEWAY_VAR_DIR": str(SCRATCH),
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "CACHE_KEY_PREFIX": "benchscale",
        "RATE_LIMIT_DEFAULT": "",
        "ACCESS_LOG": "off",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "*",
    }


def prepare_registry(size: ScaleSize, upstream: str) -> dict:
    """Reuse a registry of this size from an earlier run, else empty it and grow it again."""
    from django.core.management import call_command

    from bench.scale_registry import SLUG, empty_scale_registry, grow_registry
    from registry.models import ApiKey, Service
    from tenancy.models import Tenant

    call_command("migrate", verbosity=0)
    have = ScaleSize(
        Service.objects.filter(slug__startswith=SLUG).count(),
        Tenant.objects.filter(slug__startswith=SLUG).count(),
        ApiKey.objects.filter(tenant__slug__startswith=SLUG).count(),
    )
    if have == size:
        from registry.models import Target

        Target.objects.filter(service__slug__startswith=SLUG).update(url=upstream)  # this run's port
        return {"bulk_create_seconds": None, "reused": True}
    started = time.perf_counter()
    empty_scale_registry()
    grow_registry(size, upstream)
    return {"bulk_create_seconds": round(time.perf_counter() - started, 1), "reused": False}


def measure_compile() -> tuple[dict, object]:
    """The full compile, its memory and per-object costs; returns the updater holding it."""
    from proxy.snapshot import Snapshot
    from proxy.snapshot_delta import SnapshotUpdater
    from proxy.snapshot_size import deep_size

    updater = SnapshotUpdater()
    started = time.perf_counter()
    update = updater.next(Snapshot(version=-1))
    seconds = time.perf_counter() - started
    gc.freeze()  # what an instance does with its snapshot (proxy.runtime)
    snapshot = update.snapshot
    measured = time.perf_counter()
    exact = deep_size(snapshot)
    walk_seconds = time.perf_counter() - measured

    def mean_entry(table: dict) -> int:
        sample = list(table.values())[:500]
        return round(statistics.mean(deep_size(entry) for entry in sample)) if sample else 0

    return {
        "full_compile_seconds": round(seconds, 2),
        "full_install_longest_loop_turn_ms": round(asyncio.run(longest_loop_turn(update)) * 1000, 1),
        "snapshot_bytes_estimate": update.size_bytes,
        "snapshot_bytes_deep_walk": exact,
        "deep_walk_seconds": round(walk_seconds, 2),
        "bytes_per_service": mean_entry(snapshot.services_by_prefix),
        "bytes_per_tenant": mean_entry(snapshot.tenants),
        "bytes_per_api_key": mean_entry(snapshot.api_keys),
    }, (updater, snapshot)


async def longest_loop_turn(update) -> float:
    """Install a full snapshot on a runtime as the watcher does, on the event loop: the
    longest the loop went without a turn meanwhile (its resets and gauges come in slices)."""
    from proxy.runtime import Runtime

    runtime, longest, installed = Runtime(), 0.0, asyncio.Event()

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not installed.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    runtime.install_update(update)
    while runtime._installing is not None:  # the slices still to apply
        await asyncio.sleep(0.001)
    installed.set()
    await ticking
    return longest


class Changes:
    """The four changes SPEC 23 names, made through the ORM as the admin makes them; each
    returns the request that tells whether an instance applied it, and the status it expects."""

    def __init__(self, size: ScaleSize, upstream: str) -> None:
        self.size, self.upstream = size, upstream
        self.run = secrets.token_hex(3)
        self.new_keys: list = []

    def probe(self, secret: str, path: str = "", method: str = "GET"):
        return method, path or f"/api/v1/{service_slug(1)}/items", {"X-API-Key": secret}

    def read_only_toggle(self, attempt: int, on: bool = True):
        from tenancy.models import Tenant

        tenant = Tenant.objects.get(slug=tenant_slug(attempt))  # key `attempt` is this tenant's
        tenant.read_only, tenant.read_only_reason = on, "bench" if on else ""
        tenant.save()
        return self.probe(api_key_secret(attempt), method="POST"), 403 if on else 200

    def new_api_key(self, attempt: int):
        from registry.models import ApiKey
        from tenancy.models import Tenant

        key = ApiKey(tenant=Tenant.objects.get(slug=tenant_slug(0)), name=f"bench {self.run} {attempt}")
        secret = key.assign_new_secret()
        key.save()
        self.new_keys.append((key, secret))
        return self.probe(secret), 200

    def deleted_api_key(self, attempt: int):
        key, secret = self.new_keys.pop()
        key.delete()
        return self.probe(secret), 401

    def new_service(self, attempt: int):
        from django.db import transaction

        from registry.models import Service, Target

        slug = f"scale-new-{self.run}-{attempt}"
        with transaction.atomic():
            service = Service.objects.create(name=slug, slug=slug, path_prefix=f"/api/v1/{slug}")
            Target.objects.create(service=service, url=self.upstream)
        return self.probe(api_key_secret(0), path=f"/api/v1/{slug}/items"), 200

    def clean_up(self) -> None:
        """Remove what the run added, so the next run finds the registry at its size."""
        from registry.models import ApiKey, Service

        for service in Service.objects.filter(slug__startswith=f"scale-new-{self.run}-"):
            service.delete()
        for key in ApiKey.objects.filter(name__startswith=f"bench {self.run} "):
            key.delete()


def wait_for(client, base: str, request, expected: int, started: float) -> float:
    method, path, headers = request
    while client.request(method, base + path, headers=headers).status_code != expected:
        if time.perf_counter() - started > PROPAGATION_TIMEOUT_SECONDS:
            return PROPAGATION_TIMEOUT_SECONDS * 1000  # reported as the timeout, never hidden
        time.sleep(0.002)
    return (time.perf_counter() - started) * 1000


def summary(samples: list[float]) -> dict:
    return {
        "median_ms": round(statistics.median(samples), 1),
        "max_ms": round(max(samples), 1),
        "samples_ms": [round(s, 1) for s in samples],
        "timeouts": sum(s >= PROPAGATION_TIMEOUT_SECONDS * 1000 for s in samples),
    }


def measure_propagation(changes: Changes, second: str, attempts: int) -> dict:
    """Save on this process (the control plane); time until the second instance answers anew."""
    import httpx

    kinds = {
        "read_only_toggle": changes.read_only_toggle,
        "new_api_key": changes.new_api_key,
        "deleted_api_key": changes.deleted_api_key,
        "new_service": changes.new_service,
    }
    timings: dict[str, list[float]] = {name: [] for name in kinds}
    with httpx.Client(timeout=5) as client:
        for attempt in range(attempts):
            for name, change in kinds.items():
                started = time.perf_counter()
                request, expected = change(attempt)
                timings[name].append(wait_for(client, second, request, expected, started))
            request, expected = changes.read_only_toggle(attempt, on=False)
            wait_for(client, second, request, expected, time.perf_counter())
    return {name: summary(samples) for name, samples in timings.items()}


def measure_p99(changes: Changes, second: str, seconds: float) -> dict:
    """wrk idle and wrk while another thread saves a change every 100 ms (a read-only toggle
    or a new API key, in turn), in interleaved rounds so the machine's drift cancels."""
    from bench.wrk import run_wrk

    url, headers = f"{second}/api/v1/{service_slug(2)}/items", {"X-API-Key": api_key_secret(2)}
    run_wrk(url, 16, 1, headers)  # warm-up
    idle, busy, saved = [], [], []
    for _round in range(P99_ROUNDS):
        idle.append(run_wrk(url, 16, seconds, headers))
        busy.append(_wrk_during_changes(changes, url, headers, seconds, saved))
    changes.read_only_toggle(3, on=False)
    figures = {"idle": _median_run(idle), "during_changes": _median_run(busy)}
    return {
        **figures,
        "rounds": {"idle_p99_ms": [r["p99_ms"] for r in idle], "busy_p99_ms": [r["p99_ms"] for r in busy]},
        "changes_saved": len(saved),
        "p99_ratio": round(figures["during_changes"]["p99_ms"] / figures["idle"]["p99_ms"], 2),
    }


def _wrk_during_changes(changes: Changes, url: str, headers: dict, seconds: float, saved: list) -> dict:
    from django.db import connections

    from bench.wrk import run_wrk

    stop = threading.Event()

    def burst() -> None:
        while not stop.wait(BURST_INTERVAL_SECONDS):
            attempt = 1_000 + len(saved)
            if attempt % 2:
                changes.read_only_toggle(3, on=attempt % 4 == 1)  # tenant 3: not the probe's
            else:
                changes.new_api_key(attempt)
            saved.append(attempt)
        connections.close_all()

    worker = threading.Thread(target=burst, name="bench-burst")
    worker.start()
    try:
        return run_wrk(url, 16, seconds, headers)
    finally:
        stop.set()
        worker.join()


def _median_run(runs: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p99_ms", "non_2xx")
    return {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}


def measure_p99_during_full_rebuild(second: str, seconds: float) -> dict:
    """A change of unknown kind makes every instance rebuild whole (as after a gap): wrk runs
    meanwhile, so the figure shows what the rebuild thread costs the event loop."""
    from bench.wrk import run_wrk
    from registry.config_version import bump_config_version

    url, headers = f"{second}/api/v1/{service_slug(2)}/items", {"X-API-Key": api_key_secret(2)}
    bump_config_version()
    during = run_wrk(url, 16, seconds, headers)
    return {k: during[k] for k in ("rps", "p50_ms", "p99_ms", "non_2xx")}


def measure_delta_costs(updater, snapshot, changes: Changes) -> dict:
    """One delta per change kind in this process: the time and database queries an instance
    spends applying it (the version comes from Redis on an instance, so it is read first)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from registry.config_version import current_config_version

    costs = {}
    for name, change in (
        ("read_only_toggle", lambda: changes.read_only_toggle(4)),
        ("new_api_key", lambda: changes.new_api_key(99_999)),
        ("deleted_api_key", lambda: changes.deleted_api_key(99_999)),
        ("new_service", lambda: changes.new_service(99_999)),
    ):
        change()
        announced = current_config_version()
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            update = updater.next(snapshot, newest=announced)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        costs[name] = {"ms": elapsed_ms, "queries": len(queries), "full": update.full}
        snapshot = update.snapshot
    changes.read_only_toggle(4, on=False)
    return costs


def run(args) -> dict:
    import django

    size = QUICK if args.quick else FULL
    SCRATCH.mkdir(parents=True, exist_ok=True)
    if not (SCRATCH / "secret").exists():
        (SCRATCH / "secret").write_text(secrets.token_urlsafe(48))
    env = environment(args)
    os.environ.update(env)
    django.setup()
    children = ChildProcesses()
    log = SCRATCH / "processes.log"
    results: dict = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "size": vars(size)}
    try:
        upstream_port = free_port()
        upstream = f"http://127.0.0.1:{upstream_port}"
        children.start(
            "upstream",
            [PYTHON, "-m", "bench.upstream_app", "--port", str(upstream_port)],
            ready_url=upstream + "/",
            log=log,
        )
        print(f"bench scale: {size} on PostgreSQL ...", flush=True)
        results["registry"] = prepare_registry(size, upstream)
        results["compile"], (updater, snapshot) = measure_compile()
        print(f"  full compile: {json.dumps(results['compile'])}", flush=True)
        changes = Changes(size, upstream)
        results["delta_in_process"] = measure_delta_costs(updater, snapshot, changes)
        print(f"  one delta: {json.dumps(results['delta_in_process'])}", flush=True)
        instances = [start_instance(children, env, log, name) for name in ("first", "second")]
        second = instances[1]
        results["propagation"] = measure_propagation(changes, second, args.attempts)
        print(f"  propagation to a second instance: {json.dumps(results['propagation'])}", flush=True)
        results["p99"] = measure_p99(changes, second, args.seconds)
        print(f"  p99: {json.dumps(results['p99'])}", flush=True)
        print(f"  second instance: {json.dumps(instance_metrics(second))}", flush=True)
        results["second_instance"] = instance_metrics(second)
        changes.clean_up()
        results["p99"]["during_full_rebuild"] = measure_p99_during_full_rebuild(second, args.seconds)
        print(f"  p99 during a full rebuild: {json.dumps(results['p99']['during_full_rebuild'])}", flush=True)
    finally:
        children.stop_all()
    return results


def start_instance(children, env: dict, log, name: str) -> str:
    port = free_port()
    started = time.perf_counter()
    children.start(
        f"gateway-{name}",
        [PYTHON, "-m", "gateway_project.serve", "--port", str(port)],
        env=env,
        ready_url=f"http://127.0.0.1:{port}/health/live",
        timeout=STARTUP_TIMEOUT_SECONDS,
        log=log,
    )
    seconds = time.perf_counter() - started
    print(f"  gateway {name} ready in {seconds:.1f} s (a full compile at start)", flush=True)
    return f"http://127.0.0.1:{port}"


def instance_metrics(base: str) -> dict[str, float]:
    """The snapshot's size and how the instance applied its updates (delta or full)."""
    import httpx

    wanted = ("gateway_snapshot_bytes", "gateway_config_updates_total")
    return {
        name: float(value)
        for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines()
        if line.startswith(wanted)
        for name, value in [line.rsplit(" ", 1)]
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.database_url.startswith("postgres"):
        print("bench scale needs PostgreSQL: BENCH_SCALE_DATABASE_URL=postgres://... (scale-* rows replaced)")
        return 2
    results = run(args)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"scale-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
