"""The tenant's API keys: list, create (secret shown once), rotate, revoke.

Every lookup is scoped to the user's tenant, so another tenant's key id is a 404 whatever
URL is typed; the data plane drops a revoked key within a second (config version bump).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.models import ADDITION, CHANGE
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from gateway_project.web.viewsets import record_change
from portal.access import can_manage_keys, key_manager_only, portal_member
from portal.forms import KeyForm
from registry.models import ApiKey

__all__ = ["key_detail", "keys"]

KEY_ACTIONS = ("rotate", "revoke")


@require_http_methods(["GET", "POST"])
@portal_member
def keys(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _create(request)
    return _render_list(request, KeyForm(user=request.user))


@key_manager_only
def _create(request: HttpRequest) -> HttpResponse:
    form = KeyForm(request.POST, user=request.user)
    if not form.is_valid():
        return _render_list(request, form, status=400)
    with transaction.atomic():
        key = ApiKey(
            tenant=request.user.tenant,
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            role=request.user.role,
            expires_at=form.cleaned_data["expires_at"],
        )
        secret = key.assign_new_secret()
        try:
            key.full_clean()
        except ValidationError as exc:
            form.add_error(None, exc)
            return _render_list(request, form, status=400)
        key.save()
        record_change(request, key, ADDITION, "Created in the tenant portal.")
    return _render_detail(request, key, secret=secret, status=201)


def _render_list(request: HttpRequest, form: KeyForm, status: int = 200) -> HttpResponse:
    context = {
        "keys": ApiKey.objects.filter(tenant=request.user.tenant).order_by("revoked", "name"),
        "form": form,
        "can_manage_keys": can_manage_keys(request.user),
    }
    return render(request, "portal/keys.html", context, status=status)


@require_http_methods(["GET", "POST"])
@portal_member
def key_detail(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id, tenant=request.user.tenant)
    if request.method == "POST":
        return _change(request, key)
    return _render_detail(request, key)


@key_manager_only
def _change(request: HttpRequest, key: ApiKey) -> HttpResponse:
    action = request.POST.get("action")
    if action not in KEY_ACTIONS:
        messages.error(request, "Choose rotate or revoke.")
        return _render_detail(request, key, status=400)
    if key.revoked:
        messages.error(request, "This key is revoked; create a new one instead.")
        return _render_detail(request, key, status=409)
    if action == "revoke":
        key.revoke()
        key.save(update_fields=["revoked", "revoked_at", "updated_at"])
        record_change(request, key, CHANGE, "Revoked in the tenant portal.")
        messages.success(request, f"Key {key.name} revoked; the gateway refuses it within a second.")
        return redirect("portal:key-detail", key_id=key.pk)
    secret = key.assign_new_secret()
    key.save(update_fields=["prefix", "key_hash", "updated_at"])
    record_change(request, key, CHANGE, "Rotated in the tenant portal.")
    return _render_detail(request, key, secret=secret)


def _render_detail(request: HttpRequest, key: ApiKey, secret: str = "", status: int = 200) -> HttpResponse:
    context = {"key": key, "secret": secret, "can_manage_keys": can_manage_keys(request.user)}
    return render(request, "portal/key_detail.html", context, status=status)
