"""The admin site with a TOTP second factor (SPEC section 15), after django_otp.admin.OTPAdminSite.

Staff who have a confirmed device must give its code at login; staff without one still log
in with a password and see a banner asking them to enrol at /account/mfa/.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.urls import reverse
from django_otp import user_has_device

from tenancy.mfa.second_factor import GatewayAdminAuthenticationForm, session_is_verified

__all__ = ["GatewayAdminSite", "install_otp_admin_site"]


class GatewayAdminSite(AdminSite):
    """Like OTPAdminSite, but a second factor is required only of users who have a device."""

    login_form = GatewayAdminAuthenticationForm
    index_template = "mfa/admin_index.html"

    def has_permission(self, request) -> bool:
        return super().has_permission(request) and session_is_verified(request.user)

    def index(self, request, extra_context=None):
        context = {
            "mfa_enabled": user_has_device(request.user),
            "mfa_url": reverse("mfa:enrolment"),
            **(extra_context or {}),
        }
        return super().index(request, extra_context=context)


def install_otp_admin_site() -> AdminSite:
    """Turns the default site, where every app registered its ModelAdmins, into the
    GatewayAdminSite in place, so each ModelAdmin's `admin_site` gets the check too.

    Called from the URLconf, before the site builds its URLs.
    """
    admin.site.__class__ = GatewayAdminSite
    return admin.site
