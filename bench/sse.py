"""The SSE scenario: N concurrent alert streams on one gateway process, one alert published,
delivery latency to every client and the gateway's memory."""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx

__all__ = ["run_sse_scenario"]

CONNECT_BATCH = 500


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _client(
    host: str,
    port: int,
    token: str,
    connected: asyncio.Semaphore,
    arrivals: list,
    opened: list,
    writers: list,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writers.append(writer)
    writer.write(
        f"GET /api/v1/alerts/stream HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    buffer = b""
    while b": connected" not in buffer:
        chunk = await reader.read(4096)
        if not chunk:
            raise ConnectionError(buffer[:200])
        buffer += chunk
    opened.append(1)
    connected.release()
    while b"event: alert" not in buffer:
        chunk = await reader.read(4096)
        if not chunk:
            return
        buffer += chunk
    arrivals.append(time.perf_counter())


async def _run(url: str, token: str, clients: int, pid: int) -> dict:
    host, port = url.split("//")[1].split(":")
    port = int(port)
    arrivals: list[float] = []
    opened: list[int] = []
    writers: list = []
    connected = asyncio.Semaphore(0)
    async with httpx.AsyncClient() as client:  # warm Django's lazy imports before timing anything
        warm = await client.post(
            f"{url}/api/v1/alerts",
            json={"severity": "info", "message": "warm-up"},
            headers={"Authorization": f"Bearer {token}"},
        )
        warm.raise_for_status()
    baseline = rss_mib(pid)
    started = time.perf_counter()
    tasks = []
    for start in range(0, clients, CONNECT_BATCH):
        batch = [
            asyncio.create_task(_client(host, port, token, connected, arrivals, opened, writers))
            for _ in range(min(CONNECT_BATCH, clients - start))
        ]
        tasks += batch
        for _ in batch:
            await asyncio.wait_for(connected.acquire(), 60)
    connect_seconds = time.perf_counter() - started
    await asyncio.sleep(1)
    rss_connected = rss_mib(pid)
    async with httpx.AsyncClient() as client:
        sent_at = time.perf_counter()
        response = await client.post(
            f"{url}/api/v1/alerts",
            json={"severity": "info", "message": "bench"},
            headers={"Authorization": f"Bearer {token}"},
        )
        response.raise_for_status()
        publish_ms = (time.perf_counter() - sent_at) * 1000
    deadline = time.perf_counter() + 30
    while len(arrivals) < clients and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    latencies = sorted((arrival - sent_at) * 1000 for arrival in arrivals)
    rss_after = rss_mib(pid)
    for writer in writers:
        writer.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "clients": clients,
        "connected": len(opened),
        "delivered": len(latencies),
        "connect_seconds": round(connect_seconds, 2),
        "publish_request_ms": round(publish_ms, 1),
        "delivery_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "delivery_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 1) if latencies else None,
        "delivery_max_ms": round(latencies[-1], 1) if latencies else None,
        "rss_baseline_mib": round(baseline, 1),
        "rss_connected_mib": round(rss_connected, 1),
        "rss_after_mib": round(rss_after, 1),
        "rss_per_connection_kib": round((rss_connected - baseline) * 1024 / max(1, len(opened)), 2),
    }


def run_sse_scenario(url: str, token: str, clients: int, pid: int) -> dict:
    try:
        import uvloop

        return uvloop.run(_run(url, token, clients, pid))
    except ImportError:
        return asyncio.run(_run(url, token, clients, pid))
