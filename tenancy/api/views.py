"""Management API views for tenancy, and the OpenAPI description of the gateway's own auth."""

from __future__ import annotations

from django.contrib.admin.models import CHANGE
from django.http import HttpResponse
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import filters, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from gateway_project.web.filters import QueryFilter, QueryParamFilterBackend
from gateway_project.web.viewsets import ManagementViewSet, NotFoundProblemMixin, record_change
from tenancy.api.serializers import (
    IdentityProviderSerializer,
    PlanSerializer,
    ReadOnlyToggleSerializer,
    SubscriptionSerializer,
    TenantSerializer,
)
from tenancy.audit.trail import (
    AUDITED_MODEL_LABELS,
    AuditAction,
    AuditSource,
    event_record,
    export_response,
)
from tenancy.choices import Plan, SubscriptionStatus
from tenancy.models import AuditEvent, IdentityProvider, Subscription, Tenant
from tenancy.models import Plan as PlanModel

__all__ = [
    "AuditEventViewSet",
    "IdentityProviderViewSet",
    "PlanViewSet",
    "SubscriptionViewSet",
    "TenantViewSet",
]


# --- Audit trail bodies (the export's own shape: see tenancy.audit.trail.event_record) ----------


class AuditEventSerializer(serializers.ModelSerializer):
    """An audit event exactly as the JSON export shows it; the fields document the schema."""

    actor = serializers.CharField(source="actor_repr", help_text="Username, anonymous or system.")
    actor_id = serializers.IntegerField(allow_null=True)
    tenant = serializers.CharField(source="tenant_slug", help_text="Slug when it changed.")
    changes = serializers.DictField(
        child=serializers.ListField(), help_text="field -> [before, after]; secrets <redacted>."
    )

    class Meta:
        model = AuditEvent
        fields = (
            "id", "created_at", "actor", "actor_id", "source", "action", "model", "object_id",
            "object_repr", "tenant", "changes", "request_id",
        )  # fmt: skip
        read_only_fields = fields

    def to_representation(self, event: AuditEvent) -> dict:
        return event_record(event)


class AuditExportSerializer(serializers.Serializer):
    tenant = serializers.CharField()
    exported_at = serializers.DateTimeField()
    events = AuditEventSerializer(many=True, help_text="Oldest first.")


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
        "subscription_status": QueryFilter("subscription__status", choices=tuple(SubscriptionStatus.values)),
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

    @extend_schema(request=None, responses=AuditExportSerializer)
    @action(detail=True, methods=["get"], serializer_class=AuditExportSerializer)
    def audit(self, request: Request, pk=None) -> HttpResponse:
        """The tenant's audit trail as a JSON download, oldest first (GDPR access requests)."""
        return export_response(self.get_object())


@extend_schema(tags=["subscriptions"])
class SubscriptionViewSet(ManagementViewSet):
    queryset = Subscription.objects.select_related("tenant", "plan")
    serializer_class = SubscriptionSerializer
    query_filters = {
        "tenant": QueryFilter("tenant__slug", description="Only the tenant with this slug."),
        "status": QueryFilter("status", choices=tuple(SubscriptionStatus.values)),
    }
    search_fields = ("tenant__name", "tenant__slug")
    ordering_fields = ("current_period_end", "created_at")


@extend_schema(tags=["plans"])
class PlanViewSet(NotFoundProblemMixin, viewsets.ReadOnlyModelViewSet):
    """Plans with their quotas, read-only here (staff edit them in the admin)."""

    queryset = PlanModel.objects.prefetch_related("service_quotas__service", "rate_policies")
    serializer_class = PlanSerializer
    filter_backends = (QueryParamFilterBackend, filters.SearchFilter, filters.OrderingFilter)
    query_filters = {"name": QueryFilter("name", description="The plan with this name.")}
    search_fields = ("name", "description")
    ordering_fields = ("name", "monthly_request_quota")


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


@extend_schema(tags=["audit-events"])
class AuditEventViewSet(
    NotFoundProblemMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Every audited change (admin, API, system), newest first; written by the gateway only."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filter_backends = (QueryParamFilterBackend, filters.SearchFilter, filters.OrderingFilter)
    query_filters = {
        "tenant": QueryFilter(
            "tenant_slug", description="Events of the tenant with this slug (kept after deletion)."
        ),
        "model": QueryFilter("model", choices=AUDITED_MODEL_LABELS),
        "action": QueryFilter("action", choices=tuple(AuditAction.values)),
        "source": QueryFilter("source", choices=tuple(AuditSource.values)),
    }
    search_fields = ("object_repr", "object_id", "actor_repr", "request_id")
    ordering_fields = ("created_at",)


# --- OpenAPI: the gateway's authentication classes ---------------------------------------


class GatewayJWTScheme(SimpleJWTScheme):
    """simplejwt's bearer scheme, for the gateway's subclass (revocation-aware)."""

    target_class = "tenancy.authentication.GatewayJWTAuthentication"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenancy.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-API-Key"}


class GatewayIdentityScheme(OpenApiAuthenticationExtension):
    """Endpoints whose client tokens the door verifies take a bearer JWT or an API key."""

    target_class = "tenancy.authentication.GatewayIdentityAuthentication"
    name = ["clientBearerAuth", "clientApiKeyAuth"]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]
