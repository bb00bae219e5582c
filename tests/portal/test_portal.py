"""The tenant portal: sign-in with MFA and CSRF, usage and quota, keys, and isolation."""

from __future__ import annotations

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from registry.models import ApiKey, hash_api_key
from tests.portal.conftest import PASSWORD, post, this_hour
from usage.models import UsageHour


def test_anonymous_visitors_are_sent_to_sign_in(client, bakeries):
    for url in ("/portal/usage/", "/portal/keys/", f"/portal/keys/{bakeries['bakery-madrid']['key'].pk}/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/portal/login/?next=")


def test_sign_in_refuses_a_post_without_the_csrf_token(bakeries):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/portal/login/", {"username": "owner@bakery-madrid.example", "password": PASSWORD}
    )
    assert response.status_code == 403


def test_a_user_with_an_authenticator_needs_its_code(bakeries, signed_in):
    from django.test import Client

    member = bakeries["bakery-madrid"]["member"]
    device = TOTPDevice.objects.create(user=member, name="Phone", confirmed=True)
    client = Client()
    refused = client.post("/portal/login/", {"username": member.username, "password": PASSWORD})
    assert refused.status_code == 200 and "6-digit code" in refused.content.decode()
    assert client.get("/portal/usage/").status_code == 302
    code = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()
    client = signed_in(member, code=f"{code:06d}")
    assert client.get("/portal/usage/").status_code == 200


def test_staff_without_a_tenant_get_403(staff_user):
    from django.test import Client

    client = Client()
    client.force_login(staff_user)
    assert client.get("/portal/usage/").status_code == 403


def test_usage_page_shows_this_tenants_traffic_plan_and_quota(bakeries, signed_in):
    from proxy.traffic import LATENCY_BOUNDS

    histogram = [0] * (len(LATENCY_BOUNDS) + 1)
    histogram[3] = 42
    UsageHour.objects.create(
        tenant_slug="bakery-madrid", service_slug="sales", hour=this_hour(), requests=42, status_4xx=2,
        latency_histogram=histogram,
    )  # fmt: skip
    UsageHour.objects.create(
        tenant_slug="bakery-sevilla", service_slug="stock", hour=this_hour(), requests=99
    )
    client = signed_in(bakeries["bakery-madrid"]["member"])
    page = client.get("/portal/usage/").content.decode()
    assert 'id="usage-sales"' in page and 'id="usage-stock"' not in page
    assert 'data-total="42"' in page  # hourly and daily charts hold the 42 requests
    assert "starter" in page and "Active" in page
    assert 'data-limit="1000"' in page


def test_a_member_creates_a_key_and_sees_the_secret_once(bakeries, signed_in):
    client = signed_in(bakeries["bakery-madrid"]["member"])
    created = post(client, "/portal/keys/", {"name": "Shop tablet", "scopes": ["read", "write"]})
    assert created.status_code == 201
    secret = created.context["secret"]
    key = ApiKey.objects.get(name="Shop tablet")
    assert key.tenant.slug == "bakery-madrid" and key.scopes == ["read", "write"] and key.role == "member"
    assert key.key_hash == hash_api_key(secret) and secret in created.content.decode()
    again = client.get(f"/portal/keys/{key.pk}/").content.decode()
    assert secret not in again and key.prefix in again
    from django.contrib.admin.models import LogEntry

    entry = LogEntry.objects.get(object_id=str(key.pk))
    assert entry.user == bakeries["bakery-madrid"]["member"] and "tenant portal" in entry.change_message


def test_a_key_wider_than_the_member_is_refused(bakeries, signed_in):
    client = signed_in(bakeries["bakery-madrid"]["member"])
    refused = post(client, "/portal/keys/", {"name": "Too wide", "scopes": ["read", "admin"]})
    assert refused.status_code == 400
    assert not ApiKey.objects.filter(name="Too wide").exists()


def test_rotate_gives_a_new_secret_and_revoke_ends_the_key(bakeries, signed_in):
    key = bakeries["bakery-madrid"]["key"]
    old_hash = key.key_hash
    client = signed_in(bakeries["bakery-madrid"]["member"])
    rotated = post(client, f"/portal/keys/{key.pk}/", {"action": "rotate"})
    assert rotated.status_code == 200
    key.refresh_from_db()
    assert key.key_hash != old_hash and key.key_hash == hash_api_key(rotated.context["secret"])
    revoked = post(client, f"/portal/keys/{key.pk}/", {"action": "revoke"})
    assert revoked.status_code == 302
    key.refresh_from_db()
    assert key.revoked and key.revoked_at is not None
    assert post(client, f"/portal/keys/{key.pk}/", {"action": "rotate"}).status_code == 409


def test_viewers_see_keys_but_cannot_change_them(bakeries, signed_in):
    key = bakeries["bakery-madrid"]["key"]
    client = signed_in(bakeries["bakery-madrid"]["viewer"])
    listing = client.get("/portal/keys/").content.decode()
    assert key.name in listing and "create-key-form" not in listing
    detail = client.get(f"/portal/keys/{key.pk}/").content.decode()
    assert "revoke-key" not in detail and "rotate-key" not in detail
    assert post(client, "/portal/keys/", {"name": "Sneaky", "scopes": ["read"]}).status_code == 403
    for action in ("rotate", "revoke"):
        assert post(client, f"/portal/keys/{key.pk}/", {"action": action}).status_code == 403
    key.refresh_from_db()
    assert not key.revoked and not ApiKey.objects.filter(name="Sneaky").exists()


@pytest.mark.parametrize("who", ["member", "viewer"])
def test_another_tenants_key_is_404_whatever_the_method(bakeries, signed_in, who):
    theirs = bakeries["bakery-sevilla"]["key"]
    client = signed_in(bakeries["bakery-madrid"][who])
    assert client.get(f"/portal/keys/{theirs.pk}/").status_code == 404
    assert post(client, f"/portal/keys/{theirs.pk}/", {"action": "revoke"}).status_code == 404
    theirs.refresh_from_db()
    assert not theirs.revoked
    listing = client.get("/portal/keys/").content.decode()
    assert theirs.name not in listing


def test_the_tenant_is_never_a_url_parameter(bakeries, signed_in):
    UsageHour.objects.create(tenant_slug="bakery-sevilla", service_slug="stock", hour=this_hour(), requests=7)
    client = signed_in(bakeries["bakery-madrid"]["member"])
    page = client.get("/portal/usage/", {"tenant": "bakery-sevilla"}).content.decode()
    assert 'id="usage-stock"' not in page
    assert client.get("/portal/bakery-sevilla/usage/").status_code == 404
