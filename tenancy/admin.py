"""Admin for tenancy: tenants (read-only mode, activity), subscriptions, users, demo sessions,
external identity providers."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import Q
from django.http import HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from gateway_project.web.admin import (
    AdminLayoutMixin,
    ChoiceListField,
    ListFieldsMixin,
    NetworkListField,
    ReadOnlyAdminMixin,
)
from registry.models import ApiKey
from tenancy.audit.trail import export_response
from tenancy.choices import SubscriptionStatus
from tenancy.constants import ASYMMETRIC_ALGORITHMS
from tenancy.models import (
    AuditEvent,
    DemoSession,
    IdentityProvider,
    Plan,
    ServiceQuota,
    Subscription,
    Tenant,
    User,
)

__all__ = ["identity_provider_errors", "tenant_activity"]

RECENT_ACTIVITY_SHOWN = 25
READ_ONLY_REASON_REQUIRED = "Give a reason: clients see it in the TENANT_READ_ONLY response."
TOGGLE_TEMPLATE = "admin/tenancy/tenant/toggle_read_only.html"
EXPORT_ONE_TENANT = "Select one tenant to export its audit trail."


def tenant_activity(tenant: Tenant, limit: int = RECENT_ACTIVITY_SHOWN) -> list[LogEntry]:
    """Admin log entries about the tenant and the objects it owns, newest first."""
    rules = tenant.notification_rules  # alerts' model, reached without importing a higher layer
    owned = {
        Tenant: [tenant.pk],
        Subscription: Subscription.objects.filter(tenant=tenant).values_list("pk", flat=True),
        ApiKey: tenant.api_keys.values_list("pk", flat=True),
        rules.model: rules.values_list("pk", flat=True),
        User: tenant.users.values_list("pk", flat=True),
    }
    content_types = ContentType.objects.get_for_models(*owned)
    query = Q()
    for model, pks in owned.items():
        query |= Q(content_type=content_types[model], object_id__in=[str(pk) for pk in pks])
    entries = LogEntry.objects.filter(query).select_related("user", "content_type")
    return list(entries.order_by("-action_time", "-pk")[:limit])


# --- Read-only mode ---------------------------------------------------------------------


def read_only_reason_error(read_only: bool, reason: str) -> str | None:
    return READ_ONLY_REASON_REQUIRED if read_only and not reason.strip() else None


class TenantForm(forms.ModelForm):
    """A reason is required while read-only (it is the 403 detail) and cleared when lifted."""

    class Meta:
        model = Tenant
        fields = (
            "name", "slug", "plan", "is_demo", "mfa_required", "read_only", "read_only_reason",
            "ip_allow", "ip_deny",
        )  # fmt: skip

    def clean(self):
        cleaned = super().clean()
        read_only = cleaned.get("read_only", self.instance.read_only)
        reason = cleaned.get("read_only_reason", self.instance.read_only_reason) or ""
        error = read_only_reason_error(read_only, reason)
        if error:
            self.add_error("read_only_reason" if "read_only_reason" in self.fields else None, error)
        elif not read_only and "read_only_reason" in self.fields:
            cleaned["read_only_reason"] = ""
        return cleaned


class ToggleReadOnlyForm(forms.Form):
    reason = forms.CharField(
        max_length=Tenant._meta.get_field("read_only_reason").max_length,
        required=False,
        error_messages={"required": READ_ONLY_REASON_REQUIRED},
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Shown to API clients while the tenant is read-only.",
    )

    def __init__(self, *args, turning_on: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.turning_on = turning_on
        self.fields["reason"].required = turning_on

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        error = read_only_reason_error(self.turning_on, reason)
        if error:
            raise forms.ValidationError(error)
        return reason


# --- Tenants ----------------------------------------------------------------------------


class SubscriptionStatusFilter(admin.SimpleListFilter):
    title = "subscription status"
    parameter_name = "subscription"

    def lookups(self, request, model_admin):
        return SubscriptionStatus.choices

    def queryset(self, request, queryset):
        return queryset.filter(subscription__status=self.value()) if self.value() else queryset


class SubscriptionInline(admin.StackedInline):
    model = Subscription
    can_delete = False
    fields = ("status", "current_period_end", "grace_days")


@admin.register(Tenant)
class TenantAdmin(AdminLayoutMixin, ListFieldsMixin, admin.ModelAdmin):
    form = TenantForm
    list_fields = {"ip_allow": NetworkListField, "ip_deny": NetworkListField}
    list_display = (
        "name",
        "slug",
        "plan",
        "subscription_status",
        "is_demo",
        "read_only",
        "read_only_reason",
    )
    list_editable = ("read_only", "read_only_reason")
    list_filter = ("read_only", "is_demo", "mfa_required", "plan", SubscriptionStatusFilter)
    list_select_related = ("subscription",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("recent_activity", "created_at", "updated_at")
    inlines = (SubscriptionInline,)
    actions = ("toggle_read_only", "export_audit_trail")
    fieldsets = (
        (None, {"fields": ("name", "slug", "plan", "is_demo")}),
        ("Read-only mode", {"fields": ("read_only", "read_only_reason")}),
        ("Access", {"fields": ("mfa_required", "ip_allow", "ip_deny")}),
        ("Recent admin activity", {"fields": ("recent_activity",)}),
        ("Timestamps", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
    )

    def get_changelist_form(self, request, **kwargs):
        widgets = {"read_only_reason": forms.TextInput(attrs={"size": 28})}
        return super().get_changelist_form(request, form=TenantForm, widgets=widgets, **kwargs)

    @admin.display(description="Subscription", ordering="subscription__status")
    def subscription_status(self, tenant: Tenant) -> str:
        subscription = getattr(tenant, "subscription", None)
        return subscription.get_status_display() if subscription else "-"

    @admin.display(description="Tenant and related objects, newest first")
    def recent_activity(self, tenant: Tenant) -> str:
        if tenant.pk is None:
            return "-"
        return render_to_string(
            "admin/tenancy/tenant/activity.html",
            {"entries": tenant_activity(tenant), "tenant": tenant},
        )

    @admin.action(description="Toggle read-only", permissions=["change"])
    def toggle_read_only(self, request, queryset):
        tenants = list(queryset)
        turning_on = any(not tenant.read_only for tenant in tenants)
        data = request.POST if request.POST.get("post") == "yes" else None
        form = ToggleReadOnlyForm(data, turning_on=turning_on)
        if form.is_bound and form.is_valid():
            with transaction.atomic():
                for tenant in tenants:
                    self._toggle(request, tenant, form.cleaned_data["reason"])
            self.message_user(request, _toggle_summary(tenants), messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Toggle read-only mode",
            "opts": self.opts,
            "tenants": tenants,
            "form": form,
            "turning_on": turning_on,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, TOGGLE_TEMPLATE, context)

    def _toggle(self, request, tenant: Tenant, reason: str) -> None:
        tenant.read_only = not tenant.read_only
        tenant.read_only_reason = reason if tenant.read_only else ""
        # save(), not update(): the post_save signal bumps the config version.
        tenant.save(update_fields=["read_only", "read_only_reason", "updated_at"])
        if tenant.read_only:
            message = f"Turned read-only on: {reason}"
        else:
            message = "Turned read-only off" + (f": {reason}" if reason else ".")
        self.log_change(request, tenant, message)

    @admin.action(description="Export audit trail (JSON)", permissions=["audit"])
    def export_audit_trail(self, request, queryset) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, EXPORT_ONE_TENANT, messages.WARNING)
            return None
        return export_response(queryset.get())

    def has_audit_permission(self, request) -> bool:
        return request.user.has_perm("tenancy.view_auditevent")


def _toggle_summary(tenants: list[Tenant]) -> str:
    on = [tenant.name for tenant in tenants if tenant.read_only]
    off = [tenant.name for tenant in tenants if not tenant.read_only]
    parts = []
    if on:
        parts.append(f"now read-only: {', '.join(on)}")
    if off:
        parts.append(f"writable again: {', '.join(off)}")
    return "Read-only mode toggled; " + "; ".join(parts) + "."


@admin.register(Subscription)
class SubscriptionAdmin(AdminLayoutMixin, admin.ModelAdmin):
    list_display = ("tenant", "plan", "status", "current_period_end", "grace_days", "grace_ends_at")
    list_filter = ("status", "plan")
    list_select_related = ("tenant", "plan")
    search_fields = ("tenant__name", "tenant__slug")
    autocomplete_fields = ("tenant",)
    date_hierarchy = "current_period_end"
    readonly_fields = ("created_at", "updated_at")

    @admin.display(description="Grace ends", ordering="current_period_end")
    def grace_ends_at(self, subscription: Subscription):
        return subscription.grace_ends_at


class ServiceQuotaInline(admin.TabularInline):
    model = ServiceQuota
    fields = ("service", "monthly_request_quota")
    extra = 0


@admin.register(Plan)
class PlanAdmin(AdminLayoutMixin, admin.ModelAdmin):
    """Plans and their quotas (SPEC section 20); a subscription names its plan."""

    list_display = ("name", "monthly_request_quota", "description")
    search_fields = ("name", "description")
    filter_horizontal = ("rate_policies",)
    readonly_fields = ("created_at", "updated_at")
    inlines = (ServiceQuotaInline,)


# --- Users and demo sessions ------------------------------------------------------------


class GatewayUserChangeForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User


class GatewayUserCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username", "email", "tenant", "role")


@admin.register(User)
class GatewayUserAdmin(UserAdmin):
    form = GatewayUserChangeForm
    add_form = GatewayUserCreationForm
    list_display = ("username", "email", "tenant", "role", "is_staff", "is_active")
    list_filter = ("role", "is_staff", "is_superuser", "is_active", "groups")
    list_select_related = ("tenant",)
    search_fields = ("username", "first_name", "last_name", "email", "tenant__name", "tenant__slug")
    autocomplete_fields = ("tenant",)
    fieldsets = (
        UserAdmin.fieldsets[:2]
        + (("Tenant and role", {"fields": ("tenant", "role")}),)
        + UserAdmin.fieldsets[2:]
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "username",
                    "email",
                    "tenant",
                    "role",
                    "usable_password",
                    "password1",
                    "password2",
                ),
            },
        ),
    )


@admin.register(DemoSession)
class DemoSessionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("short_key", "tenant", "client_ip", "created_at", "expires_at", "is_active")
    list_filter = (("tenant", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("tenant",)
    search_fields = ("key", "client_ip", "tenant__slug")
    date_hierarchy = "created_at"
    exclude = ("key",)
    readonly_fields = ("short_key",)

    @admin.display(description="Session")
    def short_key(self, session: DemoSession) -> str:
        return f"{session.key[:8]}…"

    @admin.display(description="Active", boolean=True)
    def is_active(self, session: DemoSession) -> bool:
        return session.is_active


# --- External identity providers --------------------------------------------------------

IDP_NEEDS_A_METHOD = "Give a JWKS URL, an introspection URL, or both."
IDP_INTROSPECTION_NEEDS_CLIENT = "Introspection authenticates with a client id (and secret)."


def identity_provider_errors(values: dict) -> dict[str, str]:
    """Field -> error for a provider's settings (the admin form and the API share these)."""
    errors = {}
    if not values.get("jwks_url") and not values.get("introspection_url"):
        errors["jwks_url"] = IDP_NEEDS_A_METHOD
    if values.get("introspection_url") and not values.get("client_id"):
        errors["client_id"] = IDP_INTROSPECTION_NEEDS_CLIENT
    refused = sorted(set(values.get("algorithms") or ()) - ASYMMETRIC_ALGORITHMS)
    if refused:
        errors["algorithms"] = (
            f"Not accepted: {', '.join(refused)}. Only public-key algorithms "
            f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}) can be verified with a JWKS."
        )
    return errors


def _https_urls(db_field, **kwargs) -> forms.Field:
    """URLs typed without a scheme mean https (Django 6's default, without its warning)."""
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


def _algorithms(**kwargs) -> forms.Field:
    return ChoiceListField(choices=[(a, a) for a in sorted(ASYMMETRIC_ALGORITHMS)], **kwargs)


class IdentityProviderForm(forms.ModelForm):
    """The client secret is write-only: never rendered back; left empty, the stored one stays."""

    client_secret = forms.CharField(
        required=False, strip=False,
        max_length=IdentityProvider._meta.get_field("client_secret").max_length,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="For introspection (Basic auth). Leave empty to keep the stored secret.",
    )  # fmt: skip
    clear_client_secret = forms.BooleanField(required=False, label="Remove the stored secret")

    class Meta:
        model = IdentityProvider
        formfield_callback = _https_urls
        fields = (
            "name", "issuer", "enabled", "jwks_url", "algorithms", "audience",
            "introspection_url", "client_id", "client_secret", "tenant_claim", "default_tenant",
            "roles_claim", "role_mapping", "scopes_claim",
        )  # fmt: skip

    def clean_client_secret(self) -> str:
        return self.cleaned_data["client_secret"] or self.instance.client_secret

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("clear_client_secret"):
            cleaned["client_secret"] = ""
        for field, error in identity_provider_errors(cleaned).items():
            self.add_error(field if field in self.fields else None, error)
        return cleaned


@admin.register(IdentityProvider)
class IdentityProviderAdmin(ListFieldsMixin, admin.ModelAdmin):
    form = IdentityProviderForm
    list_display = ("name", "issuer", "verification", "default_tenant", "enabled")
    list_editable = ("enabled",)
    list_filter = ("enabled",)
    list_select_related = ("default_tenant",)
    search_fields = ("name", "issuer", "client_id", "audience")
    autocomplete_fields = ("default_tenant",)
    readonly_fields = ("created_at", "updated_at")
    list_fields = {"algorithms": _algorithms}
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        (None, {"fields": ("name", "issuer", "enabled")}),
        ("Verification", {"fields": (
            "jwks_url", "algorithms", "audience", "introspection_url", "client_id",
            "client_secret", "clear_client_secret",
        )}),
        ("Claims mapping", {"fields": (
            "tenant_claim", "default_tenant", "roles_claim", "role_mapping", "scopes_claim",
        )}),
        ("Timestamps", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
    )  # fmt: skip

    @admin.display(description="Verification")
    def verification(self, provider: IdentityProvider) -> str:
        methods = {"JWKS": provider.jwks_url, "introspection": provider.introspection_url}
        return " + ".join(name for name, url in methods.items() if url) or "-"


# --- Audit trail --------------------------------------------------------------------------


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Written by the gateway on every audited change: nobody adds, edits or deletes events."""

    list_display = (
        "created_at", "source", "action", "model", "object_repr", "tenant_slug", "actor_repr",
    )  # fmt: skip
    list_filter = (("tenant", admin.RelatedOnlyFieldListFilter), "model", "action", "source")
    search_fields = ("object_repr", "object_id", "actor_repr", "tenant_slug", "request_id")
    date_hierarchy = "created_at"
    fields = (
        "created_at", "source", "action", "model", "object_id", "object_repr", "tenant",
        "tenant_slug", "actor", "actor_repr", "request_id", "changes_table",
    )  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Changes (before, after)")
    def changes_table(self, event: AuditEvent) -> str:
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            ((name, json.dumps(before), json.dumps(after))
             for name, (before, after) in event.changes.items()),
        )  # fmt: skip
        return format_html("<table><tbody>{}</tbody></table>", rows)
