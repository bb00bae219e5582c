"""Alert fan-out channels carry CACHE_KEY_PREFIX (SPEC section 9): `<prefix>:alerts:tenant:<slug>`.

Two deployments sharing one Redis (staging and production, or two test runs) must never hear
each other's alerts, even for a tenant with the same slug.
"""

import pytest

from tests.alerts.conftest import publish
from tests.live import GatewayProcess, wait_until

STREAM = "/api/v1/alerts/stream"


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_two_prefixes_on_one_redis_do_not_see_each_others_alerts(
    redis_url, transactional_db, settings, tenant_user, sse
):
    # Given: two deployments on one Redis, each with a client on the same tenant's stream.
    _, _, token = tenant_user("acme")
    ours = GatewayProcess().start()
    theirs = GatewayProcess(extra_env={"CACHE_KEY_PREFIX": f"{settings.CACHE_KEY_PREFIX}-other"}).start()
    try:
        our_reader = sse(f"{ours.url}{STREAM}", token)
        their_reader = sse(f"{theirs.url}{STREAM}", token)

        # When: each deployment publishes an alert.
        theirs_sent = publish(theirs.url, token, "for the other deployment only")
        ours_sent = publish(ours.url, token, "for this deployment only")

        # Then: each client gets its own deployment's alert, and only that one.
        assert their_reader.next()["id"] == theirs_sent["event_id"]
        assert our_reader.next()["id"] == ours_sent["event_id"]
        assert our_reader.drain(wait=1.0) == []
        assert their_reader.drain(wait=0.2) == []
    finally:
        ours.stop()
        theirs.stop()


@pytest.mark.redis
def test_the_channel_names_carry_the_prefix_and_match_it_literally(redis_client, settings):
    from alerts.hub import alert_channel, alert_channel_pattern, tenant_of

    # A prefix with glob characters must not widen the subscription to other deployments.
    settings.CACHE_KEY_PREFIX = "gw*[1]"
    assert alert_channel("acme") == "gw*[1]:alerts:tenant:acme"
    assert tenant_of(b"gw*[1]:alerts:tenant:acme") == "acme"
    assert tenant_of(b"gw2:alerts:tenant:acme") is None
    pubsub = redis_client.pubsub()
    pubsub.psubscribe(alert_channel_pattern())
    try:
        confirmed = wait_until(lambda: pubsub.get_message(timeout=0.1), 2, message="the subscription")
        assert confirmed["type"] == "psubscribe"
        # Unescaped, the pattern gw*[1]:alerts:tenant:* would match this channel too.
        redis_client.publish("gwX1:alerts:tenant:acme", "theirs")
        redis_client.publish("gw*[1]:alerts:tenant:acme", "ours")
        message = wait_until(lambda: pubsub.get_message(timeout=0.1), 2, message="a pub/sub message")
        assert (message["channel"], message["data"]) == (b"gw*[1]:alerts:tenant:acme", b"ours")
        assert pubsub.get_message(timeout=0.3) is None
    finally:
        pubsub.close()
