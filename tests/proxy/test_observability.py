"""/metrics and the access log, as an operator scrapes and reads them."""

import json
import logging
import re

import httpx
import pytest

from proxy.runtime import METRICS_FLUSH_SECONDS
from tests.live import GatewayProcess, wait_until


def sample(text: str, name: str, **labels) -> float:
    """The value of one Prometheus sample whose labels include `labels`."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        metric_labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(metric_labels.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    assert found, f"no sample {name} {labels}"
    return total


def test_metrics_after_traffic(
    gateway, make_service, make_tenant, make_user, bearer, upstream, transactional_db
):
    from registry.models import RatePolicy

    tenant = make_tenant("acme")
    service = make_service("sales", targets=[upstream.url], auth_required=True)
    RatePolicy.objects.create(name="tiny", scope="user", limit=3, window_seconds=60)
    headers = bearer(make_user(tenant=tenant))
    gateway.sync()
    with httpx.Client() as client:
        before = client.get(f"{gateway.url}/metrics").text  # counters are per process: compare deltas
        statuses = [
            client.get(f"{gateway.url}/api/v1/sales/x", headers=headers).status_code for _ in range(5)
        ]
        client.get(f"{gateway.url}/api/v1/sales/x")  # no credentials
        text = client.get(f"{gateway.url}/metrics").text

    def delta(name, **labels):
        try:
            previous = sample(before, name, **labels)
        except AssertionError:
            previous = 0.0
        return sample(text, name, **labels) - previous

    assert statuses == [200, 200, 200, 429, 429]
    assert delta("gateway_requests_total", service="sales", status_code="200", method="GET") == 3
    assert delta("gateway_requests_total", service="sales", status_code="429") == 2
    assert delta("gateway_requests_total", service="sales", status_code="401") == 1
    assert delta("gateway_request_duration_seconds_count", service="sales", method="GET") == 6
    assert delta("gateway_upstream_duration_seconds_count", service="sales") == 3
    assert delta("gateway_request_size_bytes_count", service="sales") == 6
    assert delta("gateway_response_size_bytes_count", service="sales") == 6
    assert delta("gateway_auth_attempts_total", status="success") == 5
    assert delta("gateway_auth_attempts_total", status="failure") == 1
    assert delta("gateway_auth_cache_hits_total") == 4
    assert delta("gateway_auth_cache_misses_total") == 1
    assert delta("gateway_rate_limit_exceeded_total", policy="tiny", service="sales") == 2
    assert sample(text, "gateway_service_health", service="sales", target=str(service.targets.get().pk)) == 1
    assert sample(text, "gateway_config_version") == gateway.runtime.snapshot.version
    sample(text, "gateway_sse_connections")
    sample(text, "django_http_requests_total_by_method_total")  # django-prometheus, Django side
    assert "/api/v1/sales/x" not in text  # labels are bounded: never a raw path


def test_breaker_state_gauge(gateway, make_service):
    from tests.live import free_port

    service = make_service(
        "sales",
        targets=[f"http://127.0.0.1:{free_port()}"],
        retries=0,
        breaker_failure_threshold=2,
        breaker_minimum_throughput=2,
    )
    gateway.sync()
    for _ in range(2):
        httpx.get(f"{gateway.url}/api/v1/sales/x")
    text = httpx.get(f"{gateway.url}/metrics").text
    target = str(service.targets.get().pk)
    assert sample(text, "gateway_circuit_breaker_state", service="sales", target=target) == 2


def test_metrics_token(db, client, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200


def test_metrics_network_allowlist(db, client, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


def test_two_worker_processes_aggregate(transactional_db, make_service, upstream, tmp_path):
    make_service("sales", targets=[upstream.url])
    gateway = GatewayProcess(workers=2, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}).start()
    try:
        with httpx.Client() as client:
            for _ in range(40):  # fresh connections spread over both workers
                assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200
            pids = {httpx.get(f"{gateway.url}/api/v1/status").json()["instance"] for _ in range(20)}

            # The scraped worker flushes its own counts on scrape; the other worker's reach the
            # shared files within METRICS_FLUSH_SECONDS, so a scrape may lag by that much.
            def all_counted():
                text = client.get(f"{gateway.url}/metrics").text
                total = sample(text, "gateway_requests_total", service="sales", status_code="200")
                return total if total >= 40 else None

            total = wait_until(
                all_counted,
                timeout=3 * METRICS_FLUSH_SECONDS,
                message="both workers' request counts in /metrics",
            )
    finally:
        gateway.stop()
    assert len(pids) == 2, "both workers should have served requests"
    assert total == 40


@pytest.fixture
def logged_gateway(transactional_db, settings, tmp_path):
    """A gateway writing its access log to a file, as production does."""
    from tests.live import GatewayServer

    settings.RATE_LIMIT_DEFAULT = ""
    settings.ACCESS_LOG = str(tmp_path / "access.log")
    server = GatewayServer().start()
    yield server, tmp_path / "access.log"
    server.stop()


def read_lines(path, count: int, timeout: float = 3.0) -> list[dict]:
    """The access log's lines once there are `count` (they are flushed every 200 ms)."""

    def enough() -> list[dict] | None:
        text = path.read_text() if path.exists() else ""
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        return lines if len(lines) >= count else None

    return wait_until(enough, timeout, message=f"{count} access log lines in {path}")


def test_one_structured_log_line_per_request_without_secrets(
    logged_gateway, make_service, make_tenant, make_user, bearer, upstream
):
    from registry.models import ApiKey

    gateway, log_path = logged_gateway
    tenant = make_tenant("acme")
    make_service("sales", targets=[upstream.url], auth_required=True)
    key = ApiKey(tenant=tenant, name="ci")
    secret = key.assign_new_secret()
    key.save()
    headers = bearer(make_user(tenant=tenant))
    gateway.sync()
    token = headers["Authorization"].split()[1]
    httpx.get(
        f"{gateway.url}/api/v1/sales/echo?q=1",
        headers={
            **headers,
            "Cookie": "sessionid=cookie-secret-value",
            "User-Agent": "pytest-agent",
            "X-Request-ID": "trace-me-123",
        },
    )
    httpx.get(f"{gateway.url}/api/v1/sales/echo", headers={"X-API-Key": secret})
    lines = read_lines(log_path, 2)
    assert len(lines) == 2
    line = lines[0]
    for field in (
        "request_id",
        "method",
        "path",
        "service",
        "status_code",
        "process_time",
        "upstream_time",
        "user_id",
        "tenant_id",
        "client_ip",
        "user_agent",
    ):
        assert field in line, field
    assert line["request_id"] == "trace-me-123"
    assert (line["method"], line["path"], line["service"], line["status_code"]) == (
        "GET",
        "/api/v1/sales/echo",
        "sales",
        200,
    )
    assert (
        line["tenant_id"] == "acme"
        and line["client_ip"] == "127.0.0.1"
        and line["user_agent"] == "pytest-agent"
    )
    assert lines[1]["tenant_id"] == "acme" and lines[1]["user_id"].startswith("apikey:")
    everything = log_path.read_text()
    for leaked in (token, secret, "cookie-secret-value", "pw-123456789"):
        assert leaked not in everything


def test_the_access_log_can_go_through_the_logging_module(
    transactional_db, settings, make_service, upstream, caplog
):
    from tests.live import GatewayServer

    settings.RATE_LIMIT_DEFAULT = ""
    settings.ACCESS_LOG = "logging"
    make_service("sales", targets=[upstream.url])
    server = GatewayServer().start()
    try:
        server.sync()
        with caplog.at_level(logging.INFO, logger="gateway.access"):
            httpx.get(f"{server.url}/api/v1/sales/x")
            wait_until(
                lambda: [r for r in caplog.records if r.name == "gateway.access"],
                2,
                interval=0.01,
                message="a gateway.access record",
            )
    finally:
        server.stop()
    record = next(r for r in caplog.records if r.name == "gateway.access")
    assert record.path == "/api/v1/sales/x" and record.status_code == 200
