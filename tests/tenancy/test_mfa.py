"""TOTP two-factor authentication: API login challenge, admin login with an OTP token, enrolment."""

from __future__ import annotations

import base64
import itertools
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

_addresses = (f"10.77.{i // 250}.{i % 250 + 1}" for i in itertools.count())
LOGIN = "/api/v1/auth/login"
TOKEN = "/api/v1/auth/token"
PASSWORD = "member-pass-123"
UNIFORM_FIELDS = ("type", "title", "status", "detail", "code")


def code_for(device: TOTPDevice, steps: int = 0) -> str:
    """The code the user's authenticator app shows now (or `steps` time steps away)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift + steps)
    return f"{totp.token():0{device.digits}d}"


def wrong_code_for(device: TOTPDevice) -> str:
    """A well-formed code that no step within the tolerance window accepts."""
    accepted = {code_for(device, steps) for steps in range(-2, 3)}
    return next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in accepted)


@pytest.fixture
def api():
    """A client with its own source address, so login rate limits never leak between tests."""
    return APIClient(REMOTE_ADDR=next(_addresses))


@pytest.fixture
def mfa_tenant(tenant):
    tenant.mfa_required = True
    tenant.save(update_fields=["mfa_required"])
    return tenant


@pytest.fixture
def device(member_user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=member_user, name="Phone", confirmed=True)


@pytest.fixture
def staff_device(staff_user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=staff_user, name="Phone", confirmed=True)


def login(api, otp: str | None = None, password: str = PASSWORD):
    body = {"username": "member", "password": password}
    if otp is not None:
        body["otp"] = otp
    return api.post(LOGIN, body, format="json")


def uniform(problem: dict) -> dict:
    return {field: problem[field] for field in UNIFORM_FIELDS}


# --- API login --------------------------------------------------------------------------


def test_mfa_tenant_login_without_a_code_is_a_challenge_and_issues_no_tokens(api, mfa_tenant, device):
    response = login(api)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "MFA_REQUIRED"
    assert body["mfa"] == {"methods": ["totp"]}
    assert "otp" in body["detail"]
    assert "access" not in body and "refresh" not in body
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert OutstandingToken.objects.count() == 0


def test_a_valid_code_from_the_device_returns_the_token_pair(api, mfa_tenant, device, member_user):
    response = login(api, otp=code_for(device))

    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}
    me = api.get("/api/v1/users/me", HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert me.json()["username"] == "member"


def test_a_code_with_the_apps_space_is_accepted(api, mfa_tenant, device):
    code = code_for(device)
    assert login(api, otp=f"{code[:3]} {code[3:]}").status_code == 200


def test_a_wrong_code_fails_exactly_like_a_wrong_password(api, mfa_tenant, device):
    wrong_code = login(api, otp=wrong_code_for(device))
    wrong_password = login(api, otp=code_for(device), password="not-the-password")

    assert wrong_code.status_code == wrong_password.status_code == 401
    assert wrong_code.json()["code"] == "AUTH_ERROR"
    assert uniform(wrong_code.json()) == uniform(wrong_password.json())
    assert "mfa" not in wrong_code.json()
    assert OutstandingToken.objects.count() == 0


def test_a_wrong_password_is_not_told_that_the_account_has_mfa(api, mfa_tenant, device):
    response = login(api, password="not-the-password")
    assert response.status_code == 401
    assert response.json()["code"] == "AUTH_ERROR"
    assert "mfa" not in response.json()


def test_a_code_is_accepted_only_once(api, mfa_tenant, device):
    code = code_for(device)

    first = login(api, otp=code)
    replay = login(APIClient(REMOTE_ADDR=next(_addresses)), otp=code)

    assert first.status_code == 200
    assert replay.status_code == 401
    assert replay.json()["code"] == "AUTH_ERROR"
    assert OutstandingToken.objects.count() == 1  # the first login's refresh token only


@pytest.mark.parametrize("otp", [None, "123456"])
def test_mfa_tenant_user_without_a_device_must_enrol_first(api, mfa_tenant, member_user, otp):
    TOTPDevice.objects.create(user=member_user, name="never confirmed", confirmed=False)

    response = login(api, otp=otp)

    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "FORBIDDEN"
    assert "/account/mfa/" in body["detail"]
    assert body["mfa"]["enrol_url"] == "/account/mfa/"
    assert "access" not in body
    assert OutstandingToken.objects.count() == 0


def test_users_without_mfa_log_in_as_before(api, member_user):
    TOTPDevice.objects.create(user=member_user, name="never confirmed", confirmed=False)

    response = login(api)

    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}


def test_a_user_with_their_own_device_is_challenged_even_if_the_tenant_does_not_require_it(
    api, tenant, device
):
    assert not tenant.mfa_required
    assert login(api).json()["code"] == "MFA_REQUIRED"
    assert login(api, otp=code_for(device)).status_code == 200


def test_code_guessing_is_rate_limited_per_user_across_addresses(mfa_tenant, device):
    statuses = [login(APIClient(REMOTE_ADDR=next(_addresses)), otp=f"{n:06d}").status_code for n in range(5)]
    # the sixth attempt is refused before the code is looked at, even a valid one
    sixth = login(APIClient(REMOTE_ADDR=next(_addresses)), otp=code_for(device))

    assert statuses == [401] * 5
    assert sixth.status_code == 429
    assert sixth.json()["code"] == "RATE_LIMIT"


def test_oauth_form_login_follows_the_same_rules(api, mfa_tenant, device, staff_user):
    form = {"grant_type": "password", "username": "member", "password": PASSWORD}

    challenge = api.post(TOKEN, form)
    wrong = api.post(TOKEN, {**form, "otp": wrong_code_for(device)})
    device.throttle_reset()  # django-otp delays the next try after a failure
    ok = api.post(TOKEN, {**form, "otp": code_for(device)})

    assert challenge.status_code == 401
    assert challenge.json()["code"] == "MFA_REQUIRED"
    assert challenge.json()["mfa"] == {"methods": ["totp"]}
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert ok.status_code == 200
    assert ok.json()["token_type"] == "bearer"
    assert ok.json()["access_token"]


def test_oauth_form_login_asks_an_unenrolled_mfa_tenant_user_to_enrol(api, mfa_tenant, member_user):
    response = api.post(TOKEN, {"grant_type": "password", "username": "member", "password": PASSWORD})
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"


# --- Admin login ------------------------------------------------------------------------


def admin_login(client: Client, **extra):
    form = {"username": "staffer", "password": "staff-pass-123", "next": "/admin/", **extra}
    return client.post("/admin/login/?next=/admin/", form)


def assert_not_logged_in(client: Client) -> None:
    assert "_auth_user_id" not in client.session
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_admin_login_form_has_an_otp_token_field(db):
    page = Client().get("/admin/login/").content.decode()
    assert 'name="otp_token"' in page
    assert "OTP token" in page


def test_staff_with_a_device_stays_on_the_login_page_without_a_code(staff_device):
    client = Client()

    response = admin_login(client)

    assert response.status_code == 200
    assert 'id="login-form"' in response.content.decode()
    assert "enter the 6-digit code from your authenticator app" in response.content.decode()
    assert_not_logged_in(client)


def test_staff_with_a_device_and_a_wrong_code_stays_on_the_login_page(staff_device):
    client = Client()

    response = admin_login(client, otp_token=wrong_code_for(staff_device))

    assert response.status_code == 200
    assert "Invalid code" in response.content.decode()
    assert_not_logged_in(client)


def test_staff_with_a_device_and_a_valid_code_reaches_the_admin(staff_device):
    client = Client()

    response = admin_login(client, otp_token=code_for(staff_device))

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    index = client.get("/admin/")
    assert index.status_code == 200
    assert "Two-factor authentication is on" in index.content.decode()
    assert client.get("/admin/tenancy/tenant/").status_code == 200


def test_staff_without_a_device_log_in_with_a_password_and_are_asked_to_enrol(staff_user):
    client = Client()

    response = admin_login(client)

    assert response.status_code == 302
    index = client.get("/admin/").content.decode()
    assert 'id="mfa-banner"' in index
    assert "Two-factor authentication is off" in index
    assert 'href="/account/mfa/"' in index


def test_a_session_not_verified_by_the_device_cannot_reach_any_admin_page(staff_user, staff_device):
    client = Client()
    client.force_login(staff_user)  # a password-only session, as from any other login path

    for path in ("/admin/", "/admin/tenancy/tenant/", "/admin/registry/service/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/admin/login/")
    login_page = client.get("/admin/login/").content.decode()
    assert "log in again with your code" in login_page


# --- Enrolment ----------------------------------------------------------------------------


@pytest.fixture
def staff_session(staff_user) -> Client:
    client = Client()
    assert admin_login(client).status_code == 302
    return client


def test_enrolment_page_shows_a_qr_code_of_the_otpauth_uri_of_a_new_device(staff_session, staff_user):
    page = staff_session.get("/account/mfa/")

    assert page.status_code == 200
    device = TOTPDevice.objects.get(user=staff_user)
    assert not device.confirmed
    html = page.content.decode()
    assert page.context["otpauth_uri"] == device.config_url
    uri = urlparse(device.config_url)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    secret = parse_qs(uri.query)["secret"][0]
    assert base64.b32decode(secret) == device.bin_key
    assert secret in html
    assert 'src="data:image/svg+xml;base64,' in html
    svg = base64.b64decode(page.context["qr_code"].split(",", 1)[1]).decode()
    assert "<svg" in svg
    # reloading shows the same key: the app scanned once keeps working
    assert staff_session.get("/account/mfa/").context["secret"] == page.context["secret"]


def test_confirming_with_a_valid_code_turns_mfa_on(staff_session, staff_user):
    staff_session.get("/account/mfa/")
    device = TOTPDevice.objects.get(user=staff_user)

    response = staff_session.post("/account/mfa/confirm/", {"code": code_for(device)}, follow=True)

    device.refresh_from_db()
    assert device.confirmed
    html = response.content.decode()
    assert "Two-factor authentication is on" in html
    assert 'id="mfa-qr"' not in html
    # the session that proved the code stays in the admin
    assert staff_session.get("/admin/").status_code == 200
    # and the next admin login needs a code
    assert admin_login(Client()).status_code == 200


def test_confirming_with_a_wrong_code_keeps_the_device_unconfirmed(staff_session, staff_user):
    staff_session.get("/account/mfa/")
    device = TOTPDevice.objects.get(user=staff_user)

    response = staff_session.post("/account/mfa/confirm/", {"code": wrong_code_for(device)})

    assert response.status_code == 400
    assert "That code was not accepted" in response.content.decode()
    assert 'id="mfa-qr"' in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed


def test_removing_the_device_needs_a_current_code(staff_user, staff_device):
    client = Client()
    assert admin_login(client, otp_token=code_for(staff_device, steps=-1)).status_code == 302

    refused = client.post("/account/mfa/remove/", {"code": wrong_code_for(staff_device)})
    assert refused.status_code == 400
    assert TOTPDevice.objects.filter(pk=staff_device.pk).exists()

    staff_device.throttle_reset()  # django-otp delays the next try after a failure
    removed = client.post("/account/mfa/remove/", {"code": code_for(staff_device)}, follow=True)
    assert "Two-factor authentication is off" in removed.content.decode()
    assert not TOTPDevice.objects.filter(pk=staff_device.pk).exists()
    assert not TOTPDevice.objects.filter(user=staff_user, confirmed=True).exists()
    assert admin_login(Client()).status_code == 302  # password only again


def test_api_user_enrols_through_an_enrolment_only_session(mfa_tenant, member_user, api):
    browser = Client()
    assert browser.get("/account/mfa/")["Location"] == "/account/mfa/login/?next=/account/mfa/"

    # Given a member whose tenant requires MFA signs in to the enrolment pages
    signed_in = browser.post("/account/mfa/login/", {"username": "member", "password": PASSWORD})
    assert signed_in["Location"] == "/account/mfa/"
    page = browser.get("/account/mfa/")
    assert "Your tenant requires two-factor authentication" in page.content.decode()

    # Then that session is for these pages only: no admin, no API
    assert "_auth_user_id" not in browser.session
    assert browser.get("/api/v1/users/me").status_code == 401
    assert browser.get("/admin/")["Location"].startswith("/admin/login/")

    # When they confirm their app, the API login asks for its code and accepts it
    device = TOTPDevice.objects.get(user=member_user)
    browser.post("/account/mfa/confirm/", {"code": code_for(device, steps=-1)})
    assert TOTPDevice.objects.get(pk=device.pk).confirmed
    assert login(api).json()["code"] == "MFA_REQUIRED"
    assert login(api, otp=code_for(device)).status_code == 200


def test_enrolment_login_asks_for_the_code_once_a_device_exists(device):
    browser = Client()

    without = browser.post("/account/mfa/login/", {"username": "member", "password": PASSWORD})
    assert without.status_code == 200
    assert "enter the 6-digit code" in without.content.decode()
    assert browser.get("/account/mfa/").status_code == 302

    with_code = browser.post(
        "/account/mfa/login/",
        {"username": "member", "password": PASSWORD, "otp_token": code_for(device)},
    )
    assert with_code.status_code == 302
    assert "Two-factor authentication is on" in browser.get("/account/mfa/").content.decode()


def test_enrolment_login_is_rate_limited_with_the_api_logins(member_user):
    browser = Client(REMOTE_ADDR=next(_addresses))
    statuses = [
        browser.post("/account/mfa/login/", {"username": "member", "password": "wrong"}).status_code
        for _ in range(5)
    ]
    sixth = browser.post("/account/mfa/login/", {"username": "member", "password": PASSWORD})

    assert statuses == [200] * 5
    assert sixth.status_code == 429
    assert "Too many attempts" in sixth.content.decode()
    assert browser.get("/account/mfa/").status_code == 302
