"""/metrics as Prometheus itself reads it: prometheus_client's own parser takes the whole
exposition, and a flood of distinct unknown paths (a scanner, a crawler) adds no series.

Every label set is a time series Prometheus stores forever; a label that carries a raw path
lets any client on the internet grow it without bound.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.live import wait_until

UNKNOWN_PATHS = 1000
WARM_UP_PATHS = 10
KNOWN_SERVICE_PATHS = 200
FLUSH_TIMEOUT_SECONDS = 5
PATH_MARKER = "scanner-probe"


def scrape(gateway_url: str) -> dict[str, set[tuple]]:
    """Every family of the exposition, parsed, as {family: {label set of each sample}}."""
    response = httpx.get(f"{gateway_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families: dict[str, set[tuple]] = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name not in families, f"{family.name} is exposed twice"
        assert family.type in {"counter", "gauge", "histogram", "summary", "info", "stateset", "unknown"}
        families[family.name] = {(s.name, tuple(sorted(s.labels.items()))) for s in family.samples}
    return families


def requests_counted(gateway_url: str, status: str) -> float:
    """gateway_requests_total for unrouted requests with `status`, summed over methods."""
    text = httpx.get(f"{gateway_url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "gateway_requests"
        for sample in family.samples
        if sample.name == "gateway_requests_total"
        and sample.labels.get("service") == "-"
        and sample.labels.get("status_code") == status
    )


def probe(client: httpx.Client, paths: range) -> None:
    """Distinct paths nobody registered, half under /api/ (the data plane), half outside it
    (Django's 404), and a few methods besides GET.
    """
    for index in paths:
        method = ("GET", "POST", "DELETE", "OPTIONS")[index % 4]
        prefix = "/api/v1" if index % 2 else ""
        response = client.request(method, f"{prefix}/{PATH_MARKER}-{index}/x{index}?q={index}")
        assert response.status_code in {401, 403, 404, 405}, (method, index, response.status_code)


def series(families: dict[str, set[tuple]]) -> int:
    return sum(len(samples) for samples in families.values())


def test_the_exposition_parses_with_prometheus_clients_own_parser(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        assert client.get("/api/v1/sales/items").status_code == 200
        assert client.post("/api/v1/sales/items", json={}).status_code == 200
        assert client.get("/api/v1/nowhere").status_code == 404

    families = scrape(gateway.url)

    for name in (
        "gateway_requests",
        "gateway_request_duration_seconds",
        "gateway_upstream_duration_seconds",
        "gateway_service_health",
        "gateway_circuit_breaker_state",
        "gateway_config_version",
        "gateway_sse_connections",
    ):
        assert name in families, f"{name} missing from /metrics"
    labels = {dict(labels).get("service") for _, labels in families["gateway_requests"]}
    assert {"sales", "-"} <= labels


def test_label_cardinality_stays_bounded_after_a_thousand_unknown_paths(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url])
    gateway.sync()
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        # Warm up: every kind of answer the flood will get, so each label set exists once.
        probe(client, range(WARM_UP_PATHS))
        for index in range(KNOWN_SERVICE_PATHS // 10):
            client.get(f"/api/v1/sales/items/{index}")
        baseline_404 = requests_counted(gateway.url, "404")
        before = scrape(gateway.url)

        probe(client, range(WARM_UP_PATHS, WARM_UP_PATHS + UNKNOWN_PATHS))
        for index in range(KNOWN_SERVICE_PATHS):
            assert client.get(f"/api/v1/sales/items/{index}").status_code == 200

    # The flood was counted (so the scrape below is not simply early)...
    wait_until(
        lambda: requests_counted(gateway.url, "404") >= baseline_404 + UNKNOWN_PATHS // 4,
        FLUSH_TIMEOUT_SECONDS,
        message="the unknown paths counted in gateway_requests_total",
    )
    after = scrape(gateway.url)

    # ...and added no series, in any family: no label carries a path.
    grown = {name: len(after[name]) - len(before.get(name, ())) for name in after}
    assert {name: n for name, n in grown.items() if n > 0} == {}
    assert series(after) == series(before)
    leaked = [
        (name, labels)
        for name, samples in after.items()
        for _, labels in samples
        if any(PATH_MARKER in value or "/items/" in value for _, value in labels)
    ]
    assert leaked == []
