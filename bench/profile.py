"""make bench-profile: py-spy on one gateway worker serving the full pipeline under wrk.

Starts the upstream and a full-pipeline gateway as `make bench` does (RS256 JWT, Redis rate
limit, metrics, JSON access log), loads it with wrk at 64 connections and samples it with
`py-spy record` meanwhile; prints the functions with the most samples on top of the stack
(self) and on the stack at all (inclusive), as shares of all samples. GATEWAY_SERVER and
UPSTREAM_CLIENT from the environment pick the variant.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import threading

from bench.ab import bench_peers
from bench.processes import ROOT
from bench.run import SCRATCH, gateway_env, redis_url, start_gateway
from bench.wrk import run_wrk

_TOP = 15


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=12, help="seconds of load and sampling")
    parser.add_argument("--top", type=int, default=_TOP, help="functions to print")
    return parser.parse_args(argv)


def _frame_name(frame: str) -> str:
    """py-spy's raw frame `function (path/to/module.py:line)` without the line number."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    short = path.split("site-packages/")[-1].removeprefix(f"{ROOT}/")
    return f"{name} ({short})"


def summarize(collapsed: str, top: int) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        # --subprocesses puts a `process <pid>:"<command>"` frame at the root: not a function.
        frames = [_frame_name(frame) for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for name in set(frames):
            anywhere[name] += samples
    return {
        kind: [(name, round(100 * samples / max(total, 1), 1)) for name, samples in counter.most_common(top)]
        for kind, counter in (("self", own), ("inclusive", anywhere))
    }


def profile(pid: int, seconds: int, output) -> None:
    command = ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--format", "raw"]
    command += ["--output", str(output), "--rate", "200", "--nonblocking", "--subprocesses"]
    subprocess.run(command, check=True, capture_output=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not shutil.which("py-spy"):
        print("bench.profile needs py-spy: pip install py-spy")
        return 2
    with bench_peers("profile-processes.log") as (children, peers, token, log):
        output = SCRATCH / "profile.txt"
        env = gateway_env(redis_url(), ACCESS_LOG=str(SCRATCH / "access-profile.log"))
        env.update({k: os.environ[k] for k in ("GATEWAY_SERVER", "UPSTREAM_CLIENT") if k in os.environ})
        url, process = start_gateway(children, "gateway-full", env, log)
        headers = {"Authorization": f"Bearer {token}"}
        run_wrk(url + "/api/v1/bench/items", 64, 2, headers)  # warm-up
        sampler = threading.Thread(target=profile, args=(process.pid, args.seconds, output))
        sampler.start()
        load = run_wrk(url + "/api/v1/bench/items", 64, args.seconds + 1, headers)
        sampler.join()
    print(f"full pipeline under wrk: {load['rps']:,.0f} req/s, p50 {load['p50_ms']} ms")
    for kind, rows in summarize(output.read_text(), args.top).items():
        print(f"\ntop {kind} (% of samples):")
        for name, share in rows:
            print(f"  {share:5.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
