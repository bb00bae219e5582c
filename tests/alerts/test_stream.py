"""SSE alert streams: authenticated, tenant-isolated, replayable, fanned out across instances."""

import httpx
import pytest

from tests.alerts.conftest import publish
from tests.live import GatewayProcess, GatewayServer, wait_until

STREAM = "/api/v1/alerts/stream"


def test_events_arrive_one_by_one_with_the_sse_fields(live_gateway, tenant_user, sse):
    _, _, token = tenant_user("acme")
    reader = sse(f"{live_gateway.url}{STREAM}", token)
    assert reader.status == 200
    assert reader.headers["content-type"].startswith("text/event-stream")
    assert reader.headers["cache-control"].startswith("no-cache")
    assert reader.retry == 3000
    first = publish(live_gateway.url, token, "oven 3 is overheating", service="sales")
    event = reader.next()
    assert event["event"] == "alert"
    assert event["id"] == first["event_id"]
    assert event["data"]["alert_id"] == first["alert_id"]
    assert event["data"]["severity"] == "warning"
    assert event["data"]["message"] == "oven 3 is overheating"
    assert event["data"]["service"] == "sales"
    assert "timestamp" in event["data"]
    publish(live_gateway.url, token, "second")
    assert reader.next()["data"]["message"] == "second"


def test_stream_requires_authentication(live_gateway):
    response = httpx.get(f"{live_gateway.url}{STREAM}")
    assert response.status_code == 401
    assert response.json()["code"] == "AUTH_ERROR"
    assert response.headers["www-authenticate"].startswith("Bearer")
    forged = httpx.get(f"{live_gateway.url}{STREAM}", headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401


def test_query_token_for_eventsource_clients(live_gateway, tenant_user, sse):
    _, _, token = tenant_user("acme")
    reader = sse(f"{live_gateway.url}{STREAM}?access_token={token}")
    assert reader.status == 200
    publish(live_gateway.url, token, "via query token")
    assert reader.next()["data"]["message"] == "via query token"


def test_tenants_never_see_each_other(live_gateway, tenant_user, sse):
    _, _, token_a = tenant_user("tenant-a")
    _, _, token_b = tenant_user("tenant-b")
    reader_a = sse(f"{live_gateway.url}{STREAM}", token_a)
    reader_b = sse(f"{live_gateway.url}{STREAM}", token_b)
    secret = publish(live_gateway.url, token_b, "B's secret")
    publish(live_gateway.url, token_a, "A's own")
    assert [e["data"]["message"] for e in reader_a.drain()] == ["A's own"]
    assert [e["data"]["message"] for e in reader_b.drain()] == ["B's secret"]
    # Replaying from one of B's event ids gives A its own later events, never B's.
    replay = sse(f"{live_gateway.url}{STREAM}", token_a, Last_Event_ID=secret["event_id"])
    replayed = replay.drain()
    assert [e["data"]["message"] for e in replayed] == ["A's own"]
    assert {e["data"]["tenant"] for e in replayed} == {"tenant-a"}


def test_reconnect_with_last_event_id_replays_exactly_what_was_missed(live_gateway, tenant_user, sse):
    _, _, token = tenant_user("acme")
    reader = sse(f"{live_gateway.url}{STREAM}", token)
    seen = publish(live_gateway.url, token, "before")
    assert reader.next()["id"] == seen["event_id"]
    reader.close()
    missed = [publish(live_gateway.url, token, f"missed {i}")["event_id"] for i in range(5)]
    again = sse(f"{live_gateway.url}{STREAM}", token, Last_Event_ID=seen["event_id"])
    replayed = again.drain()
    assert [e["id"] for e in replayed] == missed
    after = publish(live_gateway.url, token, "live again")
    assert again.next()["id"] == after["event_id"]
    assert again.drain() == []  # nothing twice


def test_unknown_last_event_id_replays_nothing(live_gateway, tenant_user, sse):
    _, _, token = tenant_user("acme")
    publish(live_gateway.url, token, "old news")
    reader = sse(f"{live_gateway.url}{STREAM}", token, Last_Event_ID="not-an-id")
    assert reader.drain() == []


def test_a_gateway_restart_loses_nothing(transactional_db, settings, tenant_user, sse):
    settings.RATE_LIMIT_DEFAULT = ""
    _, _, token = tenant_user("acme")
    first = GatewayServer().start()
    try:
        seen = publish(first.url, token, "seen")
        missed = [publish(first.url, token, f"while down {i}")["event_id"] for i in range(3)]
    finally:
        first.stop()
    second = GatewayServer().start()
    try:
        reader = sse(f"{second.url}{STREAM}", token, Last_Event_ID=seen["event_id"])
        assert [e["id"] for e in reader.drain()] == missed
    finally:
        second.stop()


def test_publishing_needs_the_scope_or_staff(live_gateway, tenant_user):
    _, _, member_token = tenant_user("acme", role="member")
    response = httpx.post(
        f"{live_gateway.url}/api/v1/alerts",
        json={"severity": "info", "message": "x"},
        headers={"Authorization": f"Bearer {member_token}"},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"severity": "apocalyptic", "message": "x"}, "severity"),
        ({"severity": "info", "message": "x" * 2001}, "message"),
        ({"severity": "info"}, "message"),
    ],
)
def test_publishing_validates_the_body_and_saves_nothing(live_gateway, tenant_user, body, field):
    from alerts.models import Alert

    _, _, token = tenant_user("acme")
    response = httpx.post(
        f"{live_gateway.url}/api/v1/alerts", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert Alert.objects.count() == 0


def test_listing_shows_only_the_callers_tenant_paginated(live_gateway, tenant_user):
    _, _, token_a = tenant_user("tenant-a")
    _, _, token_b = tenant_user("tenant-b")
    for i in range(3):
        publish(live_gateway.url, token_a, f"a{i}")
    publish(live_gateway.url, token_b, "b0")
    listing = httpx.get(
        f"{live_gateway.url}/api/v1/alerts?limit=2", headers={"Authorization": f"Bearer {token_a}"}
    ).json()
    assert listing["count"] == 3
    assert [a["message"] for a in listing["results"]] == ["a2", "a1"]
    assert all(a["tenant"] == "tenant-a" for a in listing["results"])


def test_connection_cap_per_tenant(live_gateway, tenant_user, sse, settings):
    settings.SSE_MAX_CONNECTIONS_PER_TENANT = 2
    _, _, token = tenant_user("acme")
    sse(f"{live_gateway.url}{STREAM}", token)
    sse(f"{live_gateway.url}{STREAM}", token)
    refused = httpx.get(f"{live_gateway.url}{STREAM}", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 429
    assert refused.json()["code"] == "TOO_MANY_CONNECTIONS"


def test_disconnect_drops_the_subscription(live_gateway, tenant_user):
    _, _, token = tenant_user("acme")
    hub = live_gateway.runtime.alert_hub
    with httpx.stream(
        "GET", f"{live_gateway.url}{STREAM}", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        lines = response.iter_lines()  # keep a reference: a dropped generator closes the stream
        next(lines)
        assert hub.count("acme") == 1
    wait_until(
        lambda: not hub.count("acme"), 2, interval=0.02, message="the subscription to end after disconnect"
    )


def test_keepalive_comments(live_gateway, tenant_user, sse):
    _, _, token = tenant_user("acme")
    reader = sse(f"{live_gateway.url}{STREAM}", token)
    live_gateway.runtime.alert_hub.loop.call_soon_threadsafe(live_gateway.runtime.alert_hub.keepalive)
    wait_until(lambda: ": keepalive" in reader.comments, 2, interval=0.02, message="a keepalive comment")


@pytest.mark.redis
def test_alert_posted_to_one_instance_reaches_a_client_on_another(
    redis_url, transactional_db, tenant_user, sse
):
    _, _, token = tenant_user("acme")
    first, second = GatewayProcess().start(), GatewayProcess().start()
    try:
        reader = sse(f"{second.url}{STREAM}", token)
        sent = publish(first.url, token, "across instances")
        event = reader.next()
        assert event["id"] == sent["event_id"]
        assert event["data"]["message"] == "across instances"
    finally:
        first.stop()
        second.stop()


def test_the_log_is_bounded_per_tenant(live_gateway, tenant_user, settings, sse):
    from alerts.models import Alert

    settings.ALERT_RETENTION = 3
    _, _, token_a = tenant_user("tenant-a")
    _, _, token_b = tenant_user("tenant-b")
    first = publish(live_gateway.url, token_a, "a0")
    kept = [publish(live_gateway.url, token_a, f"a{i}")["event_id"] for i in range(1, 5)][-3:]
    publish(live_gateway.url, token_b, "b0")
    assert (
        list(Alert.objects.filter(tenant__slug="tenant-a").order_by("pk").values_list("event_id", flat=True))
        == kept
    )
    assert Alert.objects.filter(tenant__slug="tenant-b").count() == 1
    replay = sse(f"{live_gateway.url}{STREAM}", token_a, Last_Event_ID=first["event_id"])
    assert [e["id"] for e in replay.drain()] == kept  # what is left of the window, in order
