"""TOTP second factor (SPEC section 15), on django-otp: who needs a code, checking it, enrolment.

One confirmed TOTP device per account: the admin login, the API logins and the enrolment
pages all verify against it with django-otp's `verify_token`, which refuses a code already
used (`last_t`) and throttles after failures (OTP_TOTP_THROTTLE_FACTOR).
"""

from __future__ import annotations

import base64
import enum
import io
from base64 import b32encode

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.db import transaction
from django_otp import devices_for_user, user_has_device
from django_otp.forms import OTPAuthenticationFormMixin
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.qr import write_qrcode_image

from tenancy.models import User

__all__ = [
    "MFA_METHODS",
    "AccountLoginForm",
    "CodeForm",
    "GatewayAdminAuthenticationForm",
    "SecondFactor",
    "check_second_factor",
    "confirm_device",
    "confirmed_device",
    "pending_device",
    "qr_data_uri",
    "secret_of",
    "session_is_verified",
    "tenant_requires_mfa",
    "verify_code",
]

MFA_METHODS = ("totp",)
DEVICE_NAME = "Authenticator app"
CODE_MAX_LENGTH = 10
TOKEN_REQUIRED = (
    "This account uses two-factor authentication: enter the 6-digit code from your authenticator app."
)
INVALID_TOKEN = "Invalid code: enter the current 6-digit code from your authenticator app."


class SecondFactor(enum.Enum):
    """What a login with a correct password still needs."""

    NOT_REQUIRED = "not_required"  # no device, and the tenant does not ask for one
    VERIFIED = "verified"  # the code matched the user's device
    MISSING = "missing"  # the user has a device: answer with a challenge
    INVALID = "invalid"  # wrong, reused or throttled code: same answer as a bad password
    ENROLMENT_REQUIRED = "enrolment_required"  # the tenant requires MFA, the user has no device


def normalize_code(code: str | None) -> str:
    """Authenticator apps show "123 456"; people paste it with the space."""
    return "".join(str(code or "").split())


def tenant_requires_mfa(user: User) -> bool:
    return bool(user.tenant_id and user.tenant.mfa_required)


def confirmed_device(user: User, for_verify: bool = False) -> Device | None:
    """The account's device (the oldest confirmed one); locked for update when verifying."""
    devices = devices_for_user(user, confirmed=True, for_verify=for_verify)
    return next(iter(sorted(devices, key=lambda device: device.pk)), None)


def verify_code(user: User, code: str | None) -> Device | None:
    """The device that accepts `code` now, or None (wrong, reused, throttled, no device)."""
    code = normalize_code(code)
    if not code:
        return None
    with transaction.atomic():
        device = confirmed_device(user, for_verify=True)
        if device is not None and device.verify_token(code):
            return device
    return None


def check_second_factor(user: User, code: str | None) -> SecondFactor:
    """The API login rule: a device means a code is needed; a tenant may require a device."""
    if not user_has_device(user):
        if tenant_requires_mfa(user):
            return SecondFactor.ENROLMENT_REQUIRED
        return SecondFactor.NOT_REQUIRED
    if not normalize_code(code):
        return SecondFactor.MISSING
    return SecondFactor.VERIFIED if verify_code(user, code) else SecondFactor.INVALID


def session_is_verified(user) -> bool:
    """A session passes the second factor if it was verified by a device or the user has none."""
    return user.is_verified() or not user_has_device(user)


# --- Enrolment ----------------------------------------------------------------------------


def pending_device(user: User) -> TOTPDevice:
    """The user's unconfirmed TOTP device, created with a fresh random key when there is none."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)


def confirm_device(device: TOTPDevice, code: str) -> bool:
    """Confirms the device when `code` proves the user's app holds its key."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        if not device.verify_token(normalize_code(code)):
            return False
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=device.user_id, confirmed=False).delete()
    return True


def secret_of(device: TOTPDevice) -> str:
    """The key in base32, for typing into an app that cannot scan the QR code."""
    return b32encode(device.bin_key).decode()


def qr_data_uri(text: str) -> str:
    """`text` as a QR code in an SVG data URI: rendered here, no external service sees it."""
    out = io.BytesIO()
    write_qrcode_image(text, out)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()


# --- Forms --------------------------------------------------------------------------------


class _OptionalOTPForm(OTPAuthenticationFormMixin, forms.Form):
    """django-otp's login form fields and checks, asking for a code only from users who have a
    device, and verifying against their device unless they picked another of theirs."""

    otp_device = forms.CharField(required=False, widget=forms.Select)
    otp_token = forms.CharField(
        label="OTP token",
        required=False,
        max_length=CODE_MAX_LENGTH,
        help_text="The 6-digit code from your authenticator app, if your account has one.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8}),
    )
    otp_challenge = forms.CharField(required=False)  # django-otp's challenge button

    otp_error_messages = {
        **OTPAuthenticationFormMixin.otp_error_messages,
        "token_required": TOKEN_REQUIRED,
        "invalid_token": INVALID_TOKEN,
    }

    def clean(self):
        self.cleaned_data = super().clean()
        self.clean_otp(self.get_user())
        return self.cleaned_data

    def clean_otp(self, user):
        if user is not None and user_has_device(user):
            super().clean_otp(user)

    def _chosen_device(self, user):
        return super()._chosen_device(user) or confirmed_device(user, for_verify=True)

    @property
    def several_devices(self) -> bool:
        """Whether to show the device choice (filled in by django-otp after a failed code)."""
        return len(self.fields["otp_device"].widget.choices) > 2  # blank + two devices


class GatewayAdminAuthenticationForm(_OptionalOTPForm, AdminAuthenticationForm):
    """The admin login: username, password and, for staff with a device, the OTP token."""


class AccountLoginForm(_OptionalOTPForm, AuthenticationForm):
    """The enrolment pages' login, open to every active user (not only staff)."""


class CodeForm(forms.Form):
    """One code from the authenticator app (confirming or removing a device)."""

    code = forms.CharField(
        label="Code",
        max_length=CODE_MAX_LENGTH,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8}),
    )
