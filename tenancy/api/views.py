"""Management API views for tenancy, and the OpenAPI description of the gateway's own auth."""

from __future__ import annotations

from django.contrib.admin.models import CHANGE
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from registry.api.views import ManagementViewSet, QueryFilter, record_change
from tenancy.api.serializers import (
    IdentityProviderSerializer,
    ReadOnlyToggleSerializer,
    SubscriptionSerializer,
    TenantSerializer,
)
from tenancy.choices import Plan, SubscriptionStatus
from tenancy.models import IdentityProvider, Subscription, Tenant

__all__ = ["IdentityProviderViewSet", "SubscriptionViewSet", "TenantViewSet"]


@extend_schema(tags=["tenants"])
class TenantViewSet(ManagementViewSet):
    """Tenants with their subscription; read-only mode is a PATCH or the `read-only` action."""

    queryset = Tenant.objects.select_related("subscription")
    serializer_class = TenantSerializer
    query_filters = {
        "slug": QueryFilter("slug", description="The tenant with this slug."),
        "plan": QueryFilter("plan", choices=tuple(Plan.values)),
        "read_only": QueryFilter("read_only", boolean=True),
        "is_demo": QueryFilter("is_demo", boolean=True),
        "subscription_status": QueryFilter(
            "subscription__status", choices=tuple(SubscriptionStatus.values)
        ),
    }
    search_fields = ("name", "slug")
    ordering_fields = ("name", "slug", "created_at")

    @extend_schema(request=ReadOnlyToggleSerializer, responses=TenantSerializer)
    @action(
        detail=True, methods=["post"], url_path="read-only", url_name="read-only",
        serializer_class=ReadOnlyToggleSerializer,
    )  # fmt: skip
    def read_only(self, request: Request, pk=None) -> Response:
        """Turn read-only mode on (with the reason clients will see) or off."""
        tenant = self.get_object()
        body = ReadOnlyToggleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        turn_on, reason = body.validated_data["read_only"], body.validated_data["reason"]
        tenant.read_only = turn_on
        tenant.read_only_reason = reason if turn_on else ""
        # save(), not update(): the post_save signal bumps the config version.
        tenant.save(update_fields=["read_only", "read_only_reason", "updated_at"])
        if turn_on:
            message = f"Turned read-only on: {reason}"
        else:
            message = "Turned read-only off" + (f": {reason}" if reason else ".")
        record_change(request, tenant, CHANGE, message)
        return Response(TenantSerializer(tenant, context=self.get_serializer_context()).data)


@extend_schema(tags=["subscriptions"])
class SubscriptionViewSet(ManagementViewSet):
    queryset = Subscription.objects.select_related("tenant")
    serializer_class = SubscriptionSerializer
    query_filters = {
        "tenant": QueryFilter("tenant__slug", description="Only the tenant with this slug."),
        "status": QueryFilter("status", choices=tuple(SubscriptionStatus.values)),
    }
    search_fields = ("tenant__name", "tenant__slug")
    ordering_fields = ("current_period_end", "created_at")


@extend_schema(tags=["identity-providers"])
class IdentityProviderViewSet(ManagementViewSet):
    """External OAuth 2.0 / OIDC issuers whose tokens the data plane accepts (SPEC section 15)."""

    queryset = IdentityProvider.objects.select_related("default_tenant")
    serializer_class = IdentityProviderSerializer
    query_filters = {
        "issuer": QueryFilter("issuer", description="The provider with this exact issuer."),
        "enabled": QueryFilter("enabled", boolean=True),
        "default_tenant": QueryFilter(
            "default_tenant__slug", description="Only providers defaulting to this tenant slug."
        ),
    }
    search_fields = ("name", "issuer", "client_id", "audience")
    ordering_fields = ("name", "issuer", "created_at", "updated_at")


# --- OpenAPI: the gateway's authentication classes ---------------------------------------


class GatewayJWTScheme(SimpleJWTScheme):
    """simplejwt's bearer scheme, for the gateway's subclass (revocation-aware)."""

    target_class = "tenancy.authentication.GatewayJWTAuthentication"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenancy.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-API-Key"}
