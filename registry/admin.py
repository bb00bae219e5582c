"""Admin for the registry: services and their targets, health history, rate policies, API keys.

Staff actions (reset a breaker, run a health check, revoke or rotate a key) save through
the model, so the config-version signal reaches every instance, and each is logged as a
LogEntry like any other admin change.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_value
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from gateway_project.core import breaker_board
from gateway_project.web.admin import (
    AdminLayoutMixin,
    ChoiceListField,
    JSONObjectField,
    ListFieldsMixin,
    NetworkListField,
    ReadOnlyAdminMixin,
    StringListField,
)
from registry.choices import Role, Scope
from registry.constants import ALL_METHODS
from registry.models import (
    ApiKey,
    ConfigState,
    RatePolicy,
    Service,
    ServiceVersion,
    Target,
    TargetHealthCheck,
)

__all__ = ["ApiKeyAdmin", "ConfigStateAdmin", "RatePolicyAdmin", "ServiceAdmin", "TargetAdmin"]

admin.site.site_header = "Gateway administration"
admin.site.site_title = "Gateway admin"
admin.site.index_title = "Registry, tenants and alerts"

HASH_PREVIEW_LENGTH = 12
KNOWN_SCOPES_HELP = "Comma-separated. Known scopes: " + ", ".join(Scope.values) + "."
PUBLIC_PATHS_HELP = "Comma-separated paths below the prefix that need no authentication, e.g. /public."


# --- Form fields for the JSON list columns ------------------------------------------------


def _paths(**kwargs) -> forms.Field:
    kwargs["help_text"] = PUBLIC_PATHS_HELP
    return StringListField(**kwargs)


def _methods(**kwargs) -> forms.Field:
    return ChoiceListField(choices=[(m, m) for m in ALL_METHODS], **kwargs)


def _roles(**kwargs) -> forms.Field:
    return ChoiceListField(choices=Role.choices, **kwargs)


def _scopes(**kwargs) -> forms.Field:
    kwargs["help_text"] = kwargs.get("help_text") or KNOWN_SCOPES_HELP
    return StringListField(**kwargs)


def _shadows(**kwargs) -> forms.Field:
    kwargs["help_text"] = "Comma-separated slugs of services this prefix knowingly takes paths from."
    return StringListField(**kwargs)


# --- Shared target actions --------------------------------------------------------------


def reset_breakers(modeladmin: admin.ModelAdmin, request: HttpRequest, targets) -> int:
    """Stamp `breaker_reset_at`; every instance closes the target's breaker on the next snapshot."""
    now = timezone.now()
    count = 0
    with transaction.atomic():
        for target in targets:
            target.breaker_reset_at = now
            target.save(update_fields=["breaker_reset_at", "updated_at"])
            modeladmin.log_change(request, target, "Reset the circuit breaker.")
            count += 1
    return count


def run_health_checks(modeladmin: admin.ModelAdmin, request: HttpRequest, targets: QuerySet) -> None:
    try:
        from registry.health import check_targets_now
    except ImportError:
        modeladmin.message_user(request, "Health checks are not available yet.", messages.WARNING)
        return
    check_targets_now(targets)
    checked = list(Target.objects.filter(pk__in=targets.values("pk")))
    for target in checked:
        modeladmin.log_change(request, target, "Ran a health check now.")
    healthy = sum(target.healthy for target in checked)
    modeladmin.message_user(
        request,
        f"Checked {len(checked)} target(s): {healthy} healthy, {len(checked) - healthy} unhealthy.",
        messages.SUCCESS if healthy == len(checked) else messages.WARNING,
    )


# --- Services and targets ---------------------------------------------------------------


class ServiceVersionInline(admin.TabularInline):
    model = ServiceVersion
    extra = 0
    fields = ("version", "deprecated", "deprecated_at", "sunset_at")


class BreakerStateMixin:
    """The breaker state the gateway instances published for a target (SPEC section 16)."""

    @admin.display(description="Circuit breaker")
    def breaker_state(self, target: Target) -> str:
        if target.pk is None:
            return "-"
        board = breaker_board.recent_board()
        views = board.per_instance(target.pk)
        if not views:
            return "no instance reporting"
        worst = board.describe(target.pk)
        label = f"{worst['state'].replace('_', '-')} ({worst['failure_count']} failures)"
        return f"{label} on {sum(v['state'] == worst['state'] for v in views)} of {len(views)} instance(s)"


class TargetInline(BreakerStateMixin, admin.TabularInline):
    """A service's targets; the state columns are the saved target's (the target's own page has
    the breaker reset time and the health history)."""

    model = Target
    extra = 1
    fields = (
        "url",
        "weight",
        "enabled",
        "demo_only",
        "version",
        "health",
        "breaker_state",
        "last_checked_at",
    )
    readonly_fields = ("health", "breaker_state", "last_checked_at")
    show_change_link = True

    @admin.display(description="Healthy")
    def health(self, target: Target) -> str:
        # A row not saved yet has not been checked: no tick (Target.healthy defaults to True).
        empty = self.get_empty_value_display()
        return empty if target.pk is None else display_for_value(target.healthy, empty, boolean=True)


@admin.register(Service)
class ServiceAdmin(ListFieldsMixin, AdminLayoutMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "path_prefix",
        "target_summary",
        "auth_required",
        "websocket_enabled",
        "enabled",
    )
    list_editable = ("enabled",)
    list_filter = ("enabled", "auth_required", "websocket_enabled", "load_balancing")
    search_fields = ("name", "slug", "path_prefix", "description")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "updated_at")
    inlines = (TargetInline, ServiceVersionInline)
    actions = ("reset_all_breakers", "run_health_check_now", "purge_response_cache")
    save_on_top = True
    list_fields = {
        "allowed_methods": _methods,
        "public_paths": _paths,
        "read_roles": _roles,
        "write_roles": _roles,
        "read_scopes": _scopes,
        "write_scopes": _scopes,
        "ip_allow": NetworkListField,
        "ip_deny": NetworkListField,
        "shadows": _shadows,
        "header_transforms": JSONObjectField,
    }
    fieldsets = (
        (None, {"fields": ("name", "slug", "description", "enabled")}),
        (
            "Routing",
            {
                "fields": (
                    "path_prefix",
                    "shadows",
                    "upstream_path",
                    "load_balancing",
                    "allowed_methods",
                    "websocket_enabled",
                )
            },
        ),
        ("Timeouts and retries", {"fields": ("connect_timeout", "read_timeout", "retries")}),
        (
            "Authentication and authorization",
            {
                "fields": (
                    "auth_required",
                    "public_paths",
                    "read_roles",
                    "read_scopes",
                    "write_roles",
                    "write_scopes",
                )
            },
        ),
        (
            "Circuit breaker",
            {
                "classes": ("collapse",),
                "fields": (
                    "breaker_failure_threshold",
                    "breaker_failure_window",
                    "breaker_minimum_throughput",
                    "breaker_recovery_timeout",
                    "breaker_success_threshold",
                ),
            },
        ),
        ("Health checks", {"fields": ("health_path", "health_interval")}),
        ("Limits", {"fields": ("max_body_bytes",)}),
        ("Response cache", {"fields": ("cache_ttl",)}),
        ("Versions", {"fields": ("default_version",)}),
        ("Networks", {"classes": ("collapse",), "fields": ("ip_allow", "ip_deny")}),
        ("Header transforms", {"classes": ("collapse",), "fields": ("header_transforms",)}),
        ("API docs", {"classes": ("collapse",), "fields": ("openapi_path",)}),
        ("Timestamps", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                target_count=Count("targets", filter=Q(targets__enabled=True)),
                healthy_count=Count("targets", filter=Q(targets__enabled=True, targets__healthy=True)),
            )
        )

    @admin.display(description="Healthy targets")
    def target_summary(self, service: Service) -> str:
        return f"{service.healthy_count} / {service.target_count}"

    @admin.action(description="Reset circuit breakers of all targets", permissions=["change"])
    def reset_all_breakers(self, request, queryset):
        count = reset_breakers(self, request, Target.objects.filter(service__in=queryset))
        for service in queryset:
            self.log_change(request, service, "Reset the circuit breakers of all targets.")
        self.message_user(request, f"Reset the circuit breakers of {count} target(s).")

    @admin.action(description="Run health check now", permissions=["change"])
    def run_health_check_now(self, request, queryset):
        run_health_checks(self, request, Target.objects.filter(service__in=queryset))

    @admin.action(description="Purge the response cache", permissions=["change"])
    def purge_response_cache(self, request, queryset):
        for service in queryset:
            service.purge_cache()
            self.log_change(request, service, "Purged the response cache.")
        self.message_user(
            request,
            f"Purged the response cache of {queryset.count()} service(s) on every instance.",
        )


class TargetHealthCheckInline(admin.TabularInline):
    model = TargetHealthCheck
    fields = ("created_at", "ok", "status_code", "latency_ms", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False
    classes = ("collapse",)
    verbose_name_plural = "Health check history"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Target)
class TargetAdmin(BreakerStateMixin, AdminLayoutMixin, admin.ModelAdmin):
    list_display = (
        "url",
        "service",
        "weight",
        "enabled",
        "demo_only",
        "healthy",
        "breaker_state",
        "last_checked_at",
        "breaker_reset_at",
    )
    list_editable = ("weight", "enabled")
    list_filter = ("enabled", "healthy", "demo_only", "service")
    list_select_related = ("service",)
    search_fields = ("url", "service__name", "service__slug")
    autocomplete_fields = ("service",)
    readonly_fields = (
        "healthy",
        "breaker_state",
        "last_checked_at",
        "breaker_reset_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("service", "url", "weight", "enabled", "demo_only", "version")}),
        (
            "Upstream TLS (https:// targets)",
            {
                "fields": ("tls_verify", "tls_ca_file", "tls_client_cert_file", "tls_client_key_file"),
                "classes": ("collapse",),
            },
        ),
        ("State", {"fields": readonly_fields}),
    )
    inlines = (TargetHealthCheckInline,)
    actions = ("reset_breaker", "run_health_check_now")

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    @admin.action(description="Reset circuit breaker", permissions=["change"])
    def reset_breaker(self, request, queryset):
        count = reset_breakers(self, request, queryset)
        self.message_user(request, f"Reset the circuit breakers of {count} target(s).")

    @admin.action(description="Run health check now", permissions=["change"])
    def run_health_check_now(self, request, queryset):
        run_health_checks(self, request, queryset)


@admin.register(TargetHealthCheck)
class TargetHealthCheckAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "target", "service", "ok", "status_code", "latency_ms", "error")
    list_filter = ("ok", "target__service")
    list_select_related = ("target__service",)
    search_fields = ("target__url", "target__service__name", "error")
    date_hierarchy = "created_at"

    @admin.display(description="Service", ordering="target__service__name")
    def service(self, check: TargetHealthCheck) -> Service:
        return check.target.service


# --- Rate policies ----------------------------------------------------------------------


@admin.register(RatePolicy)
class RatePolicyAdmin(ListFieldsMixin, AdminLayoutMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "scope",
        "service",
        "limit",
        "window_seconds",
        "burst",
        "algorithm",
        "fail_mode",
        "enabled",
    )
    list_editable = ("enabled",)
    list_filter = ("enabled", "scope", "algorithm", "fail_mode", "service")
    list_select_related = ("service",)
    search_fields = ("name", "plan", "service__name")
    autocomplete_fields = ("service",)
    readonly_fields = ("created_at", "updated_at")
    list_fields = {"methods": _methods}
    fieldsets = (
        (None, {"fields": ("name", "enabled")}),
        ("Applies to", {"fields": ("scope", "service", "methods", "role", "plan")}),
        ("Limit", {"fields": ("limit", "window_seconds", "algorithm", "burst", "fail_mode")}),
        ("Timestamps", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
    )


# --- API keys ---------------------------------------------------------------------------


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked"))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked=False).filter(Q(expires_at=None) | Q(expires_at__gt=now))
        if self.value() == "expired":
            return queryset.filter(revoked=False, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked=True)
        return queryset


def _show_secret_once(request: HttpRequest, key: ApiKey, secret: str, verb: str) -> None:
    messages.success(
        request,
        format_html(
            "{} API key “{}”: <code>{}</code> Copy it now, it will not be shown again.",
            verb,
            key.name,
            secret,
        ),
    )


@admin.register(ApiKey)
class ApiKeyAdmin(ListFieldsMixin, AdminLayoutMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "tenant",
        "prefix",
        "role",
        "scopes",
        "expires_at",
        "is_active",
        "revoked",
        "last_used_at",
    )
    list_filter = (ApiKeyStatusFilter, "role", "revoked")
    list_select_related = ("tenant",)
    search_fields = ("name", "prefix", "tenant__name", "tenant__slug")
    autocomplete_fields = ("tenant",)
    date_hierarchy = "created_at"
    list_fields = {"scopes": _scopes}
    actions = ("revoke_keys", "rotate_keys")
    secret_fields = (
        "prefix",
        "hash_preview",
        "last_used_at",
        "revoked_at",
        "created_at",
        "updated_at",
    )

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": ("tenant", "name", "role", "scopes", "expires_at", "revoked")})]
        if obj is not None:
            fieldsets.append(("Key", {"fields": self.secret_fields}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        # A key belongs to one tenant for life: moving it would hand a secret to another tenant.
        return self.secret_fields + (("tenant",) if obj is not None else ())

    @admin.display(description="Active", boolean=True)
    def is_active(self, key: ApiKey) -> bool:
        return key.is_active

    @admin.display(description="SHA-256 hash")
    def hash_preview(self, key: ApiKey) -> str:
        return f"{key.key_hash[:HASH_PREVIEW_LENGTH]}…" if key.key_hash else "-"

    def save_model(self, request, obj, form, change):
        secret = None if change else obj.assign_new_secret()
        if obj.revoked and obj.revoked_at is None:
            obj.revoked_at = timezone.now()
        elif not obj.revoked:
            obj.revoked_at = None
        super().save_model(request, obj, form, change)
        if secret:
            _show_secret_once(request, obj, secret, "New")

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request, queryset):
        count = 0
        with transaction.atomic():
            for key in queryset.filter(revoked=False):
                key.revoke()
                key.save()
                self.log_change(request, key, "Revoked the key.")
                count += 1
        self.message_user(request, f"Revoked {count} API key(s).")

    @admin.action(description="Rotate selected keys", permissions=["change"])
    def rotate_keys(self, request, queryset):
        rotated = []
        with transaction.atomic():
            for key in queryset:
                old_prefix = key.prefix
                rotated.append((key, key.assign_new_secret()))
                key.save()
                message = f"Rotated the secret (was {old_prefix}, now {key.prefix})."
                self.log_change(request, key, message)
        for key, secret in rotated:
            _show_secret_once(request, key, secret, "Rotated")


@admin.register(ConfigState)
class ConfigStateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "version", "updated_at")
    fields = ("version", "updated_at")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the durable counter: deleting it would move versions backwards
