"""A 3-master Redis Cluster on loopback for `make bench` (SPEC section 21).

The full pipeline is measured once against the single Redis and once against this
Cluster, in the same interleaved rounds, so the figure says what the Cluster costs (or
buys) one gateway worker: every request's limiter keys are spread over the shards by
their hash tags.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["assign_slots", "cluster_node_port", "start_cluster"]

CLUSTER_MASTERS = 3
CLUSTER_BUS_OFFSET = 10_000  # Redis Cluster's bus listens on port + 10000
START_SECONDS = 10


def cluster_node_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(100):
        port = random.randint(20_000, 50_000)
        try:
            for candidate in (port, port + CLUSTER_BUS_OFFSET):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _answers(port: int, command: list[str]) -> str:
    result = subprocess.run(
        ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=5
    )
    return result.stdout


def assign_slots(ports: list[int]) -> None:
    """`redis-cli --cluster create` over running cluster-enabled nodes, then wait until every
    node says `cluster_state:ok`."""
    subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports)]
        + ["--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    deadline = time.monotonic() + START_SECONDS
    while not all("cluster_state:ok" in _answers(port, ["cluster", "info"]) for port in ports):
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster did not agree on its slots")
        time.sleep(0.1)


def start_cluster(children, directory: Path, log: Path) -> str | None:
    """Start the masters under `children`, assign the slots; the cluster's REDIS_URL or None."""
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        return None
    ports = []
    for index in range(CLUSTER_MASTERS):
        node_dir = directory / f"node{index}"
        node_dir.mkdir(parents=True, exist_ok=True)
        port = cluster_node_port()
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir)]
        command += ["--cluster-enabled", "yes", "--save", "", "--appendonly", "no"]
        children.start(f"redis-cluster-{index}", command, log=log)
        ports.append(port)
    deadline = time.monotonic() + START_SECONDS
    while not all("PONG" in _answers(port, ["ping"]) for port in ports):
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster's redis-server nodes did not answer")
        time.sleep(0.1)
    assign_slots(ports)
    return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
