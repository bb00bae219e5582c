"""Forwarding through a live gateway to a real upstream on loopback."""

import httpx
import pytest


@pytest.fixture
def sales(make_service, upstream):
    return make_service("sales", targets=[upstream.url])


def test_request_reaches_upstream_with_prefix_rewritten(gateway, sales, upstream):
    gateway.sync()
    response = httpx.post(
        f"{gateway.url}/api/v1/sales/echo/items?x=1&y=%20z",
        content=b'{"a": 1}',
        headers={"Content-Type": "application/json", "X-Custom": "kept"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["method"] == "POST"
    assert body["path"] == "/echo/items"
    assert body["query"] == "x=1&y=%20z"
    assert body["body"] == '{"a": 1}'
    received = upstream.hits("/echo")[0]
    assert received.headers["x-custom"] == "kept"
    assert received.headers["x-forwarded-proto"] == "http"
    assert received.headers["x-forwarded-for"] == "127.0.0.1"
    assert received.headers["x-forwarded-host"] == f"127.0.0.1:{gateway.port}"
    assert received.headers["host"] == f"127.0.0.1:{upstream.port}"
    assert received.headers["x-request-id"] == response.headers["x-request-id"]
    assert received.headers["traceparent"].startswith("00-")


def test_gateway_headers_on_response(gateway, sales):
    gateway.sync()
    response = httpx.get(f"{gateway.url}/api/v1/sales/echo", headers={"X-Request-ID": "abc.DEF_123-x"})
    assert response.headers["x-request-id"] == "abc.DEF_123-x"
    assert float(response.headers["x-process-time"]) >= 0
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "referrer-policy" in response.headers
    assert "strict-transport-security" not in response.headers  # plain HTTP


@pytest.mark.parametrize("bad_id", ["has space", "x" * 129, "semi;colon", ""])
def test_malformed_request_id_is_replaced(gateway, sales, upstream, bad_id):
    gateway.sync()
    response = httpx.get(f"{gateway.url}/api/v1/sales/echo", headers={"X-Request-ID": bad_id})
    assert response.headers["x-request-id"] != bad_id
    assert len(response.headers["x-request-id"]) == 36  # a UUID4
    assert upstream.hits("/echo")[-1].headers["x-request-id"] == response.headers["x-request-id"]


def test_traceparent_continues_the_clients_trace(gateway, sales, upstream):
    gateway.sync()
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    httpx.get(f"{gateway.url}/api/v1/sales/echo", headers={"traceparent": trace})
    sent = upstream.hits("/echo")[-1].headers["traceparent"]
    assert sent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert sent.endswith("-01")
    assert sent.split("-")[2] != "00f067aa0ba902b7"  # the gateway is the new parent


def test_hop_by_hop_and_spoofed_identity_headers_are_stripped(gateway, sales, upstream):
    gateway.sync()
    httpx.get(
        f"{gateway.url}/api/v1/sales/echo",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "must-not-pass",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9v",
            "X-User-ID": "42",
            "X-Tenant-ID": "other-tenant",
            "X-User-Roles": "admin",
            "X-User-Scopes": "admin",
            "X-Demo-Mode": "true",
            "X-Demo-Session": "stolen",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
        },
    )
    headers = upstream.hits("/echo")[-1].headers
    for name in (
        "x-secret-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "x-user-id",
        "x-tenant-id",
        "x-user-roles",
        "x-user-scopes",
        "x-demo-mode",
        "x-demo-session",
    ):
        assert name not in headers, name
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{gateway.port}"


def test_unknown_prefix_is_404_problem(gateway, sales, upstream):
    gateway.sync()
    response = httpx.get(f"{gateway.url}/api/v1/nothing-here/x")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "NOT_FOUND"
    assert problem["type"] == "/problems/not-found"
    assert problem["instance"] == "/api/v1/nothing-here/x"
    assert problem["request_id"] == response.headers["x-request-id"]
    assert upstream.hits() == []


def test_prefix_matches_whole_segments_only(gateway, sales, upstream):
    gateway.sync()
    assert httpx.get(f"{gateway.url}/api/v1/salesforce/x").status_code == 404
    assert upstream.hits() == []


def test_longest_prefix_wins(gateway, make_service, upstream, second_upstream):
    make_service("sales", targets=[upstream.url])
    make_service("reports", path_prefix="/api/v1/sales/reports", targets=[second_upstream.url])
    gateway.sync()
    httpx.get(f"{gateway.url}/api/v1/sales/reports/q1")
    httpx.get(f"{gateway.url}/api/v1/sales/orders")
    assert [r.path for r in second_upstream.hits()] == ["/q1"]
    assert [r.path for r in upstream.hits()] == ["/orders"]


def test_disallowed_method_is_405_with_allow(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url], allowed_methods=["GET", "HEAD"])
    gateway.sync()
    response = httpx.delete(f"{gateway.url}/api/v1/sales/x")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"
    assert upstream.hits() == []


def test_upstream_errors_pass_through_unchanged(gateway, sales):
    gateway.sync()
    response = httpx.get(f"{gateway.url}/api/v1/sales/status/418")
    assert response.status_code == 418
    assert response.json() == {"status": 418}


def test_upstream_security_headers_are_not_duplicated(gateway, sales):
    gateway.sync()
    response = httpx.get(f"{gateway.url}/api/v1/sales/set-headers?X-Frame-Options=SAMEORIGIN")
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]


def test_disabled_service_is_503(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url], enabled=False)
    gateway.sync()
    response = httpx.get(f"{gateway.url}/api/v1/sales/x")
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"


def test_service_without_enabled_target_is_503(gateway, make_service, upstream):
    make_service("sales", targets=[{"url": upstream.url, "enabled": False}])
    gateway.sync()
    response = httpx.get(f"{gateway.url}/api/v1/sales/x")
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
