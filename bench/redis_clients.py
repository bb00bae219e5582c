"""The rate limiter's round trip on each Redis client, under concurrency (one child per run).

Run: python -m bench.redis_clients <client> <redis url> <seconds> <concurrency>
where <client> is `pipe` (proxy/redis_pipe.py: one pipelined connection), `redispy-1`
(redis-py + hiredis, one connection) or `redispy-pool` (redis-py + hiredis, a connection
per concurrent caller, its default). Each of <concurrency> tasks repeats the limiter's
EVALSHA (one GCRA policy, its own key) as fast as replies come; prints one JSON line with
calls per second and the p50 / p99 round trip in ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import uvloop

CLIENTS = ("pipe", "redispy-1", "redispy-pool")
_WARMUP_SECONDS = 0.5


async def _pipe_caller(url: str):
    from proxy.ratelimit import LUA_SCRIPT
    from proxy.redis_pipe import RedisPipe, script_sha

    pipe, sha = RedisPipe(url), script_sha(LUA_SCRIPT)

    def call(key: str, member: str):
        return pipe.evalsha(LUA_SCRIPT, sha, [key], [member, "g", 1_000_000_000, 60_000, 1_000_000_000])

    return call, pipe.close


async def _redispy_caller(url: str, connections: int | None):
    import redis.asyncio as redis

    from proxy.ratelimit import LUA_SCRIPT

    pool = (
        redis.BlockingConnectionPool.from_url(url, max_connections=connections, timeout=5)
        if connections
        else redis.ConnectionPool.from_url(url)
    )
    client = redis.Redis(connection_pool=pool)
    script = client.register_script(LUA_SCRIPT)

    def call(key: str, member: str):
        return script(keys=[key], args=[member, "g", 1_000_000_000, 60_000, 1_000_000_000])

    return call, client.aclose


async def _caller(kind: str, url: str):
    if kind == "pipe":
        return await _pipe_caller(url)
    return await _redispy_caller(url, 1 if kind == "redispy-1" else None)


async def measure(kind: str, url: str, seconds: float, concurrency: int) -> dict:
    call, close = await _caller(kind, url)
    latencies: list[float] = []
    counter = iter(range(10**12))
    stop = time.perf_counter() + _WARMUP_SECONDS + seconds
    record_from = time.perf_counter() + _WARMUP_SECONDS

    async def worker(index: int) -> None:
        key = f"bench-ab:rl:{os.getpid()}:{index}"
        while (now := time.perf_counter()) < stop:
            await call(key, f"m{next(counter)}")
            if now >= record_from:
                latencies.append(time.perf_counter() - now)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    await close()
    latencies.sort()
    return {
        "client": kind,
        "calls_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
    }


def main() -> None:
    kind, url, seconds, concurrency = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    if kind not in CLIENTS:
        raise SystemExit(f"client must be one of {', '.join(CLIENTS)}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    print(json.dumps(uvloop.run(measure(kind, url, seconds, concurrency))))


if __name__ == "__main__":
    main()
