"""A staff member with an authenticator app logs into the admin, in a real browser."""

from __future__ import annotations

import base64
import os

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from tenancy.models import User


def current_code(device: TOTPDevice) -> str:
    """What the staff member's authenticator app shows right now."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


@pytest.fixture
def enrolled_staff(transactional_db) -> TOTPDevice:
    user = User.objects.create_superuser("ops", "ops@example.com", "ops-pass-123")
    return TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)


@pytest.mark.browser
def test_admin_login_needs_the_code_from_the_app(live_server, page, enrolled_staff, artifacts_dir):
    # Given a staff member with a confirmed TOTP device on the admin login page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    assert page.locator("label[for=id_otp_token]").inner_text().startswith("OTP token")

    # When they log in with their password only
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops-pass-123")
    page.click("input[type=submit]")

    # Then they stay on the login page with an error saying what is missing
    page.wait_for_selector("#login-error")
    assert "enter the 6-digit code" in page.inner_text("#login-error")
    assert "/admin/login/" in page.url
    page.screenshot(path=os.path.join(artifacts_dir, "admin-mfa-code-missing.png"), full_page=True)
    page.goto(f"{live_server.url}/admin/")
    assert "/admin/login/" in page.url

    # When they log in again with the code their app shows
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops-pass-123")
    page.fill("#id_otp_token", current_code(enrolled_staff))
    page.click("input[type=submit]")

    # Then they see the admin index, with two-factor authentication on
    page.wait_for_selector("#mfa-status")
    assert page.url == f"{live_server.url}/admin/"
    assert "Registry, tenants and alerts" in page.inner_text("body")
    assert "Two-factor authentication is on" in page.inner_text("#mfa-status")
    page.screenshot(path=os.path.join(artifacts_dir, "admin-mfa-logged-in.png"), full_page=True)
    enrolled_staff.refresh_from_db()
    assert enrolled_staff.last_used_at is not None


@pytest.mark.browser
def test_staff_enrol_an_authenticator_app_from_the_admin(live_server, page, transactional_db, artifacts_dir):
    User.objects.create_superuser("ops", "ops@example.com", "ops-pass-123")

    # Given a staff member without a device, logged in with a password, told to enrol
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops-pass-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#mfa-banner")
    page.get_by_role("link", name="Set up an authenticator app").click()

    # When they scan the QR code (here: type the key shown) and confirm with the app's code
    page.wait_for_selector("#mfa-qr")
    assert page.locator("#mfa-qr").evaluate("img => img.naturalWidth") > 0
    secret = page.inner_text("#mfa-secret")
    assert page.inner_text("#mfa-uri").startswith("otpauth://totp/")
    page.screenshot(path=os.path.join(artifacts_dir, "mfa-enrolment.png"), full_page=True)
    app = TOTP(base64.b32decode(secret))
    page.fill("#id_code", f"{app.token():06d}")
    page.get_by_role("button", name="Confirm").click()

    # Then two-factor authentication is on, and the admin still lets them in
    page.wait_for_selector("#mfa-device")
    assert "Two-factor authentication is on" in page.inner_text("h1")
    assert TOTPDevice.objects.get(user__username="ops").confirmed
    page.goto(f"{live_server.url}/admin/")
    assert "Two-factor authentication is on" in page.inner_text("#mfa-status")
