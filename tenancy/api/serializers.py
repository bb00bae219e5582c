"""Management API bodies for tenancy: tenants (read-only mode, subscription), subscriptions."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gateway_project.web.serializers import FullCleanModelSerializer, SlugKeyField
from tenancy.admin import identity_provider_errors, read_only_reason_error
from tenancy.models import IdentityProvider, Plan, ServiceQuota, Subscription, Tenant

__all__ = [
    "IdentityProviderSerializer",
    "PlanSerializer",
    "ReadOnlyToggleSerializer",
    "SubscriptionSerializer",
    "SubscriptionSummarySerializer",
    "TenantSerializer",
]

_REASON_MAX_LENGTH = Tenant._meta.get_field("read_only_reason").max_length


class SubscriptionSummarySerializer(serializers.ModelSerializer):
    grace_ends_at = serializers.DateTimeField(read_only=True)

    class Meta:
        model = Subscription
        fields = ("id", "status", "current_period_end", "grace_days", "grace_ends_at")
        read_only_fields = fields


class TenantSerializer(FullCleanModelSerializer):
    """A tenant; a reason is required while read-only (clients see it) and cleared when lifted."""

    subscription = SubscriptionSummarySerializer(read_only=True, allow_null=True)

    class Meta:
        model = Tenant
        fields = (
            "id", "name", "slug", "plan", "read_only", "read_only_reason", "is_demo",
            "mfa_required", "ip_allow", "ip_deny", "subscription", "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = ("created_at", "updated_at")

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        current = self.instance
        read_only = attrs.get("read_only", current.read_only if current else False)
        reason = attrs.get("read_only_reason", current.read_only_reason if current else "")
        error = read_only_reason_error(read_only, reason or "")
        if error:
            raise serializers.ValidationError({"read_only_reason": [error]})
        attrs["read_only_reason"] = reason.strip() if read_only else ""
        return attrs


class ReadOnlyToggleSerializer(serializers.Serializer):
    read_only = serializers.BooleanField()
    reason = serializers.CharField(
        max_length=_REASON_MAX_LENGTH, required=False, allow_blank=True, default="",
        help_text="Required when turning read-only on: clients get it in TENANT_READ_ONLY.",
    )  # fmt: skip

    def validate(self, attrs: dict) -> dict:
        attrs["reason"] = attrs["reason"].strip()
        error = read_only_reason_error(attrs["read_only"], attrs["reason"])
        if error:
            raise serializers.ValidationError({"reason": [error]})
        return attrs


class SubscriptionSerializer(FullCleanModelSerializer):
    tenant = SlugKeyField(slug_field="slug", queryset=Tenant.objects.all())
    plan = SlugKeyField(
        slug_field="name", queryset=Plan.objects.all(), required=False, allow_null=True,
        help_text="The plan's name (its quotas and default rate policies); null: no quota.",
    )  # fmt: skip
    grace_ends_at = serializers.DateTimeField(read_only=True)

    class Meta:
        model = Subscription
        fields = (
            "id", "tenant", "plan", "status", "current_period_end", "grace_days", "grace_ends_at",
            "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = ("created_at", "updated_at")


class IdentityProviderSerializer(FullCleanModelSerializer):
    """An external issuer; `client_secret` is write-only, `has_client_secret` says if one is set."""

    default_tenant = SlugKeyField(
        slug_field="slug", queryset=Tenant.objects.all(), allow_null=True, required=False
    )
    has_client_secret = serializers.SerializerMethodField()

    class Meta:
        model = IdentityProvider
        fields = (
            "id", "name", "issuer", "enabled", "jwks_url", "algorithms", "audience",
            "introspection_url", "client_id", "client_secret", "has_client_secret",
            "tenant_claim", "default_tenant", "roles_claim", "role_mapping", "scopes_claim",
            "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = ("created_at", "updated_at")
        extra_kwargs = {"client_secret": {"write_only": True, "style": {"input_type": "password"}}}

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_has_client_secret(self, provider: IdentityProvider) -> bool:
        return bool(provider.client_secret)

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        current = {
            name: getattr(self.instance, name)
            for name in ("jwks_url", "introspection_url", "client_id", "algorithms")
        } if self.instance is not None else {}  # fmt: skip
        errors = identity_provider_errors({**current, **attrs})
        if errors:
            raise serializers.ValidationError({field: [error] for field, error in errors.items()})
        return attrs


class ServiceQuotaSerializer(serializers.ModelSerializer):
    service = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = ServiceQuota
        fields = ("service", "monthly_request_quota")
        read_only_fields = fields


class PlanSerializer(serializers.ModelSerializer):
    """A plan as subscriptions name it; plans are edited in the admin (SPEC section 20)."""

    service_quotas = ServiceQuotaSerializer(many=True, read_only=True)
    rate_policies = serializers.SlugRelatedField(
        slug_field="name", many=True, read_only=True, help_text="Default rate policies (names)."
    )

    class Meta:
        model = Plan
        fields = (
            "id", "name", "description", "monthly_request_quota", "service_quotas", "rate_policies",
            "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = fields
