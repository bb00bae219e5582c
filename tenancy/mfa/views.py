"""Enrolment pages at /account/mfa/: add a TOTP device (QR code, confirm with a code), remove it.

Staff arrive with their admin session. Everyone else signs in on /account/mfa/login/, which
opens an enrolment-only session: a key in the session naming the account, not a Django login,
so a password alone never grants API or admin access to an account of an `mfa_required`
tenant.
"""

from __future__ import annotations

import time

from django.contrib import messages
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_otp import login as otp_login

from tenancy.mfa.second_factor import (
    AccountLoginForm,
    CodeForm,
    confirm_device,
    confirmed_device,
    pending_device,
    qr_data_uri,
    secret_of,
    tenant_requires_mfa,
    verify_code,
)
from tenancy.models import User
from tenancy.views import PublicAuthView

__all__ = ["AccountLoginView", "account_logout", "confirm", "enrolment", "remove"]

ACCOUNT_SESSION_KEY = "mfa_account"
ACCOUNT_SESSION_SECONDS = 15 * 60
TOO_MANY_ATTEMPTS = "Too many attempts; wait a minute and retry."
LOGIN_GROUP = "login"  # shared with the API logins: one budget for password and code guesses


def _too_many_attempts(request: HttpRequest, user_name: str) -> bool:
    """The API logins' django-ratelimit budget (per IP and per user name)."""
    return PublicAuthView().throttled(request, LOGIN_GROUP, user_name.lower()) is not None


def account_user(request: HttpRequest) -> User | None:
    """The admin session's user, or the account of an enrolment session that has not expired."""
    if request.user.is_authenticated:
        return request.user
    user_id, expires_at = request.session.get(ACCOUNT_SESSION_KEY, (None, 0))
    if user_id is None or expires_at < time.time():
        return None
    return User.objects.filter(pk=user_id, is_active=True).select_related("tenant").first()


def _login_redirect(request: HttpRequest) -> HttpResponse:
    return redirect(f"{reverse('mfa:login')}?next={reverse('mfa:enrolment')}")


class AccountLoginView(LoginView):
    """Password, plus the code for accounts that have a device; opens an enrolment session."""

    form_class = AccountLoginForm
    template_name = "mfa/login.html"

    def post(self, request, *args, **kwargs):
        if _too_many_attempts(request, request.POST.get("username", "")):
            context = self.get_context_data(form=self.form_class(request), error=TOO_MANY_ATTEMPTS)
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        self.request.session.cycle_key()  # no session fixation
        deadline = time.time() + ACCOUNT_SESSION_SECONDS
        self.request.session[ACCOUNT_SESSION_KEY] = (form.get_user().pk, deadline)
        return redirect(self.get_success_url())

    def get_default_redirect_url(self) -> str:
        return reverse("mfa:enrolment")


@require_POST
def account_logout(request: HttpRequest) -> HttpResponse:
    request.session.pop(ACCOUNT_SESSION_KEY, None)
    return redirect("mfa:login")


@require_GET
def enrolment(request: HttpRequest) -> HttpResponse:
    """The account's device, or a new unconfirmed one with its QR code and a confirm form."""
    user = account_user(request)
    if user is None:
        return _login_redirect(request)
    return _render_page(request, user, CodeForm())


def _render_page(request: HttpRequest, user: User, form: CodeForm, status: int = 200) -> HttpResponse:
    context = {
        "account": user,
        "form": form,
        "device": confirmed_device(user),
        "tenant_requires": tenant_requires_mfa(user),
        "enrolment_session": not request.user.is_authenticated,
    }
    if context["device"] is None:
        pending = pending_device(user)
        context["otpauth_uri"] = pending.config_url
        context["qr_code"] = qr_data_uri(pending.config_url)
        context["secret"] = secret_of(pending)
    return render(request, "mfa/enrolment.html", context, status=status)


def _code_view(action):
    """POST with a code, for a signed-in account, inside the login rate limit."""

    def view(request: HttpRequest) -> HttpResponse:
        user = account_user(request)
        if user is None:
            return _login_redirect(request)
        form = CodeForm(request.POST)
        if _too_many_attempts(request, user.get_username()):
            form.add_error(None, TOO_MANY_ATTEMPTS)
            return _render_page(request, user, form, status=429)
        if form.is_valid() and (message := action(request, user, form.cleaned_data["code"])):
            messages.success(request, message)
            return redirect("mfa:enrolment")
        if not form.errors:
            form.add_error("code", "That code was not accepted. Enter the current code from your app.")
        return _render_page(request, user, form, status=400)

    view.__name__ = action.__name__
    view.__doc__ = action.__doc__
    return require_POST(view)


@_code_view
def confirm(request: HttpRequest, user: User, code: str) -> str | None:
    """Confirms the pending device: the code proves the app holds its key."""
    if confirmed_device(user) is not None:
        return None
    device = pending_device(user)
    if not confirm_device(device, code):
        return None
    if request.user.is_authenticated:
        otp_login(request, device)  # the admin session is now verified by this device
    return "Two-factor authentication is on: logins now ask for a code from your app."


@_code_view
def remove(request: HttpRequest, user: User, code: str) -> str | None:
    """Removes the account's device; a current code proves the request comes from its holder."""
    device = verify_code(user, code)
    if device is None:
        return None
    device.delete()
    return "Two-factor authentication is off: the device was removed."
