"""Who may use the portal, and for what: the logged-in user's own tenant only.

The tenant is always `request.user.tenant`, never a URL parameter (SPEC section 20); staff
without a tenant have the admin instead. Viewers read; members and above also change keys.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.urls import reverse

from gateway_project.core.roles import MEMBER, ROLE_RANK
from tenancy.mfa.second_factor import session_is_verified

__all__ = ["can_manage_keys", "key_manager_only", "portal_member"]


def can_manage_keys(user) -> bool:
    return ROLE_RANK.get(user.role, -1) >= ROLE_RANK[MEMBER]


def portal_member(view):
    """Signed in (with the second factor when the user has a device) as a tenant's user."""

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs):
        user = request.user
        if not user.is_authenticated or not session_is_verified(user):
            return redirect_to_login(request.get_full_path(), reverse("portal:login"))
        if user.tenant_id is None:
            raise PermissionDenied("The portal is for tenants' users; staff use the admin.")
        return view(request, *args, **kwargs)

    return guarded


def key_manager_only(view):
    """Changes to keys: members and above; a viewer's POST is refused (403)."""

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs):
        if not can_manage_keys(request.user):
            raise PermissionDenied("Viewers can see keys but not change them.")
        return view(request, *args, **kwargs)

    return portal_member(guarded)
