"""GET /api/manage/usage/: filters, hour and day granularity, CSV export, staff only."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from usage.models import UsageHour

URL = "/api/manage/usage/"
DAY = datetime(2026, 3, 14, tzinfo=UTC)


def _histogram(fast: int, slow: int) -> list[int]:
    from proxy.traffic import LATENCY_BOUNDS

    histogram = [0] * (len(LATENCY_BOUNDS) + 1)
    histogram[2] = fast  # <= 5 ms
    histogram[7] = slow  # <= 250 ms
    return histogram


@pytest.fixture
def hours(db):
    rows = [
        ("madrid", "sales", 9, 10, 1, 0, _histogram(9, 1)),
        ("madrid", "sales", 10, 30, 0, 3, _histogram(30, 0)),
        ("madrid", "stock", 10, 5, 0, 0, _histogram(5, 0)),
        ("sevilla", "sales", 10, 7, 2, 0, _histogram(0, 7)),
    ]
    for tenant, service, hour, requests, c4, c5, histogram in rows:
        UsageHour.objects.create(
            tenant_slug=tenant, service_slug=service, hour=DAY.replace(hour=hour),
            requests=requests, status_4xx=c4, status_5xx=c5, bytes_in=requests * 10,
            bytes_out=requests * 100, latency_histogram=histogram,
        )  # fmt: skip


def test_hourly_usage_of_one_tenant_and_service(staff_client, hours):
    response = staff_client.get(
        URL, {"tenant": "madrid", "service": "sales", "from": "2026-03-14", "to": "2026-03-15"}
    )
    assert response.status_code == 200
    rows = response.json()
    assert [(r["period_start"], r["requests"], r["status_4xx"], r["status_5xx"]) for r in rows] == [
        ("2026-03-14T09:00:00Z", 10, 1, 0),
        ("2026-03-14T10:00:00Z", 30, 0, 3),
    ]
    assert rows[0]["latency_p50_ms"] == 5.0 and rows[0]["latency_p95_ms"] == 250.0
    assert rows[1]["bytes_in"] == 300 and rows[1]["bytes_out"] == 3000


def test_daily_usage_sums_the_hours(staff_client, hours):
    response = staff_client.get(URL, {"from": "2026-03-14", "to": "2026-03-15", "granularity": "day"})
    assert response.status_code == 200
    by_key = {(r["tenant"], r["service"]): r for r in response.json()}
    assert set(by_key) == {("madrid", "sales"), ("madrid", "stock"), ("sevilla", "sales")}
    madrid = by_key[("madrid", "sales")]
    assert (madrid["period_start"], madrid["requests"], madrid["status_5xx"]) == (
        "2026-03-14T00:00:00Z",
        40,
        3,
    )
    assert madrid["latency_p95_ms"] == 5.0  # 39 of 40 requests took at most 5 ms


@pytest.mark.parametrize("how", ["format", "accept"])
def test_csv_export(staff_client, hours, how):
    params = {"tenant": "sevilla", "from": "2026-03-14", "to": "2026-03-15"}
    if how == "format":
        response = staff_client.get(URL, {**params, "format": "csv"})
    else:
        response = staff_client.get(URL, params, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows == [
        {
            "tenant": "sevilla", "service": "sales", "period_start": "2026-03-14T10:00:00Z", "requests": "7",
            "status_4xx": "2", "status_5xx": "0", "bytes_in": "70", "bytes_out": "700",
            "latency_p50_ms": "250.0", "latency_p95_ms": "250.0",
        }
    ]  # fmt: skip


@pytest.mark.parametrize(
    "params, field",
    [
        ({"granularity": "week"}, "granularity"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-03-15", "to": "2026-03-14"}, "from"),
        ({"from": "2026-01-01", "to": "2026-12-01", "granularity": "hour"}, "to"),
    ],
)
def test_bad_parameters_are_a_validation_problem(staff_client, params, field):
    response = staff_client.get(URL, params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR" and field in body["errors"]


def test_bad_parameters_with_csv_accepted_still_get_a_problem(staff_client):
    response = staff_client.get(URL, {"granularity": "week"}, HTTP_ACCEPT="text/csv")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def test_members_may_not_read_usage(member_client, hours):
    response = member_client.get(URL)
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"


def test_an_unknown_format_is_a_validation_problem(staff_client):
    response = staff_client.get(URL, {"format": "xml"})
    assert response.status_code == 400
    assert "format" in response.json()["errors"]
