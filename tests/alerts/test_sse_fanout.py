"""1,000 concurrent SSE clients on one gateway process all receive one alert (bounded, loopback).

The 10,000-client figure is `make bench`'s; this test keeps the same code path at a size CI
can afford and prints the numbers the README quotes.
"""

import pytest

from bench.processes import raise_fd_limit
from bench.sse import run_sse_scenario
from tests.live import GatewayProcess

CLIENTS = 1000


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_one_alert_reaches_a_thousand_streams(transactional_db, tenant_user):
    raise_fd_limit()
    _, _, token = tenant_user("fanout")
    # Opening a stream counts against the rate policies like any request (SPEC 16): the
    # default 300 per minute per client would refuse most of these from one test client.
    gateway = GatewayProcess(
        extra_env={"SSE_MAX_CONNECTIONS_PER_TENANT": str(CLIENTS * 2), "RATE_LIMIT_DEFAULT": ""}
    ).start()
    try:
        result = run_sse_scenario(gateway.url, token, CLIENTS, gateway.process.pid)
    finally:
        gateway.stop()
    print(f"\nSSE fan-out to {CLIENTS}: {result}")
    assert result["connected"] == CLIENTS
    assert result["delivered"] == CLIENTS
    assert result["delivery_p99_ms"] < 1000
    assert result["rss_per_connection_kib"] < 100
