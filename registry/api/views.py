"""Management API views for the registry: services, targets, versions, policies, keys, breakers,
health and config. The bases they share with other apps are in `gateway_project.web`.
"""

from __future__ import annotations

from django.contrib.admin.models import CHANGE
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import filters, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway_project.core.problems import PROBLEM_CONTENT_TYPE
from gateway_project.web.filters import QueryFilter, QueryParamFilterBackend
from gateway_project.web.problems import ProblemSerializer, problem_response
from gateway_project.web.viewsets import ManagementViewSet, NoBody, NotFoundProblemMixin, record_change
from registry.api.serializers import (
    ApiKeySerializer,
    ApiKeyWithSecretSerializer,
    CircuitBreakerSerializer,
    ConfigVersionSerializer,
    HealthCheckRequestSerializer,
    HealthReportSerializer,
    RatePolicySerializer,
    ServiceSerializer,
    ServiceVersionSerializer,
    TargetSerializer,
)
from registry.choices import RateScope, Role
from registry.config_version import current_config_version
from registry.models import ApiKey, RatePolicy, Service, ServiceVersion, Target, TargetHealthCheck

__all__ = [
    "ApiKeyViewSet",
    "CircuitBreakerViewSet",
    "ConfigView",
    "HealthCheckView",
    "HealthView",
    "RatePolicyViewSet",
    "ServiceVersionViewSet",
    "ServiceViewSet",
    "TargetViewSet",
]

# --- Services and targets ---------------------------------------------------------------


def _slug_filter(lookup: str, what: str) -> QueryFilter:
    return QueryFilter(lookup, description=f"Only items of the {what} with this slug.")


@extend_schema(tags=["services"])
class ServiceViewSet(ManagementViewSet):
    """Services with their targets nested: created, replaced and patched in one transaction."""

    queryset = Service.objects.prefetch_related("targets")
    serializer_class = ServiceSerializer
    query_filters = {
        "slug": QueryFilter("slug", description="The service with this slug."),
        "enabled": QueryFilter("enabled", boolean=True),
        "websocket_enabled": QueryFilter("websocket_enabled", boolean=True),
    }
    search_fields = ("name", "slug", "path_prefix", "description")
    ordering_fields = ("name", "slug", "path_prefix", "created_at", "updated_at")

    @extend_schema(request=None, responses=ServiceSerializer)
    @action(detail=True, methods=["post"], url_path="purge-cache", serializer_class=NoBody)
    def purge_cache(self, request: Request, pk=None) -> Response:
        """Drop the service's cached responses on every instance (a new cache generation)."""
        service = self.get_object()
        service.purge_cache()
        record_change(request, service, CHANGE, "Purged the response cache through the API.")
        return Response(ServiceSerializer(service, context=self.get_serializer_context()).data)


@extend_schema(tags=["services"])
class ServiceVersionViewSet(ManagementViewSet):
    """API versions of services (/api/v<N>/<name> or Accept-Version), with deprecation dates."""

    queryset = ServiceVersion.objects.select_related("service")
    serializer_class = ServiceVersionSerializer
    query_filters = {"service": _slug_filter("service__slug", "service")}
    search_fields = ("service__slug", "version")
    ordering_fields = ("version", "created_at")


@extend_schema(tags=["targets"])
class TargetViewSet(ManagementViewSet):
    queryset = Target.objects.select_related("service")
    serializer_class = TargetSerializer
    query_filters = {
        "service": _slug_filter("service__slug", "service"),
        "enabled": QueryFilter("enabled", boolean=True),
        "healthy": QueryFilter("healthy", boolean=True),
        "demo_only": QueryFilter("demo_only", boolean=True),
    }
    search_fields = ("url", "service__name", "service__slug")
    ordering_fields = ("url", "weight", "last_checked_at", "created_at")


@extend_schema(tags=["rate-policies"])
class RatePolicyViewSet(ManagementViewSet):
    queryset = RatePolicy.objects.select_related("service")
    serializer_class = RatePolicySerializer
    query_filters = {
        "scope": QueryFilter("scope", choices=tuple(RateScope.values)),
        "service": _slug_filter("service__slug", "service"),
        "enabled": QueryFilter("enabled", boolean=True),
    }
    search_fields = ("name", "plan")
    ordering_fields = ("name", "limit", "window_seconds", "created_at")


@extend_schema(tags=["api-keys"])
@extend_schema_view(create=extend_schema(responses={201: ApiKeyWithSecretSerializer}))
class ApiKeyViewSet(ManagementViewSet):
    """Tenant API keys: the secret is in the create and rotate answers only, never stored."""

    queryset = ApiKey.objects.select_related("tenant")
    serializer_class = ApiKeySerializer
    query_filters = {
        "tenant": _slug_filter("tenant__slug", "tenant"),
        "revoked": QueryFilter("revoked", boolean=True),
        "role": QueryFilter("role", choices=tuple(Role.values)),
    }
    search_fields = ("name", "prefix", "tenant__name", "tenant__slug")
    ordering_fields = ("name", "created_at", "expires_at", "last_used_at")

    def get_serializer_class(self):
        return ApiKeyWithSecretSerializer if self.action == "create" else super().get_serializer_class()

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"], serializer_class=NoBody)
    def revoke(self, request: Request, pk=None) -> Response:
        """Revoke the key: every gateway instance refuses it within a second."""
        key = self.get_object()
        if not key.revoked:
            key.revoke()
            key.save()
            record_change(request, key, CHANGE, "Revoked the key through the API.")
        return Response(ApiKeySerializer(key, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=ApiKeyWithSecretSerializer)
    @action(detail=True, methods=["post"], serializer_class=NoBody)
    def rotate(self, request: Request, pk=None) -> Response:
        """Give the key a new secret (shown in this answer only); the old one stops working."""
        key = self.get_object()
        key.plaintext_secret = key.assign_new_secret()
        key.save()
        record_change(request, key, CHANGE, "Rotated the key through the API.")
        context = self.get_serializer_context()
        return Response(ApiKeyWithSecretSerializer(key, context=context).data)


# --- Circuit breakers, health, config ---------------------------------------------------


@extend_schema(tags=["circuit-breakers"])
class CircuitBreakerViewSet(
    NotFoundProblemMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Every target's breaker as each live gateway instance published it; a reset reaches every
    instance."""

    queryset = Target.objects.select_related("service")
    serializer_class = CircuitBreakerSerializer
    filter_backends = (QueryParamFilterBackend, filters.SearchFilter, filters.OrderingFilter)
    query_filters = {
        "service": _slug_filter("service__slug", "service"),
        "enabled": QueryFilter("enabled", boolean=True),
    }
    search_fields = ("url", "service__name", "service__slug")
    ordering_fields = ("url", "breaker_reset_at")

    @extend_schema(request=None, responses=CircuitBreakerSerializer)
    @action(detail=True, methods=["post"], serializer_class=NoBody)
    def reset(self, request: Request, pk=None) -> Response:
        """Close the target's breaker on every instance (they see the stamp in their snapshot)."""
        target = self.get_object()
        target.breaker_reset_at = timezone.now()
        target.save(update_fields=["breaker_reset_at", "updated_at"])
        record_change(request, target, CHANGE, "Reset the circuit breaker through the API.")
        return Response(CircuitBreakerSerializer(target, context=self.get_serializer_context()).data)


def health_report(targets: QuerySet) -> dict:
    """Each target with its newest stored check, in two queries however many targets."""
    newest = TargetHealthCheck.objects.filter(target=OuterRef("pk")).order_by("-created_at", "-pk")
    rows = list(targets.select_related("service").annotate(last_check_id=Subquery(newest.values("pk")[:1])))
    checks = TargetHealthCheck.objects.in_bulk([t.last_check_id for t in rows if t.last_check_id])
    for target in rows:
        target.last_check = checks.get(target.last_check_id)
    return {
        "last_sweep_at": max((check.created_at for check in checks.values()), default=None),
        "targets": rows,
    }


_SERVICE_PARAMETER = OpenApiParameter(
    "service", OpenApiTypes.STR, description="Only the targets of the service with this slug."
)


@extend_schema(tags=["health"])
class HealthView(APIView):
    """The last health sweep: per target its state and newest check. Never calls upstreams."""

    @extend_schema(responses=HealthReportSerializer, parameters=[_SERVICE_PARAMETER])
    def get(self, request: Request) -> Response:
        targets = Target.objects.all()
        if slug := request.query_params.get("service"):
            targets = targets.filter(service__slug=slug)
        return Response(HealthReportSerializer(health_report(targets)).data)


@extend_schema(tags=["health"])
class HealthCheckView(APIView):
    """Check enabled targets now (all, or one service's) and answer with the fresh report."""

    @extend_schema(
        request=HealthCheckRequestSerializer,
        responses={200: HealthReportSerializer, (503, PROBLEM_CONTENT_TYPE): ProblemSerializer},
    )
    def post(self, request: Request) -> Response:
        body = HealthCheckRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            from registry.health import check_targets_now
        except ImportError:
            return problem_response(
                request, "SERVICE_UNAVAILABLE", "Health checks are not available on this gateway."
            )
        targets = Target.objects.filter(enabled=True)
        if service := body.validated_data.get("service"):
            targets = targets.filter(service=service)
        check_targets_now(targets)
        return Response(HealthReportSerializer(health_report(targets)).data)


@extend_schema(tags=["config"])
class ConfigView(APIView):
    """The registry's config version: every instance rebuilds its snapshot when it moves."""

    @extend_schema(responses=ConfigVersionSerializer)
    def get(self, request: Request) -> Response:
        return Response(ConfigVersionSerializer({"version": current_config_version()}).data)
