"""Management API views for the registry, and the pieces every app's management API shares.

Shared: `QueryFilter` / `QueryParamFilterBackend` (simple `?name=value` filters that also
appear in the OpenAPI schema), and `ManagementViewSet`, which records each change in
Django's LogEntry like the admin does, so API changes show in a tenant's history too.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db import transaction
from django.db.models import OuterRef, ProtectedError, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import filters, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.filters import BaseFilterBackend
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway_project.problems import ProblemSerializer, problem_response
from proxy.problems import PROBLEM_CONTENT_TYPE
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
    "ManagementViewSet",
    "NotFoundProblemMixin",
    "QueryFilter",
    "QueryParamFilterBackend",
    "RatePolicyViewSet",
    "ServiceVersionViewSet",
    "ServiceViewSet",
    "TargetViewSet",
    "record_change",
]

_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


# --- Shared by every app's management API -----------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryFilter:
    """One `?name=value` list filter: an ORM lookup, a value type and the allowed values."""

    lookup: str
    boolean: bool = False
    choices: tuple[str, ...] = ()
    description: str = ""

    def parse(self, raw: str):
        if self.boolean:
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError("Use true or false.")
        if self.choices and raw not in self.choices:
            raise ValueError(f"Use one of: {', '.join(self.choices)}.")
        return raw

    def openapi_parameter(self, name: str) -> dict:
        schema = {"type": "boolean"} if self.boolean else {"type": "string"}
        if self.choices:
            schema["enum"] = list(self.choices)
        return {
            "name": name, "in": "query", "required": False, "schema": schema,
            "description": self.description or f"Only items whose {name} is this value.",
        }  # fmt: skip


class QueryParamFilterBackend(BaseFilterBackend):
    """Filters a list by the view's `query_filters`; a bad value is a 400 naming the parameter."""

    def filter_queryset(self, request: Request, queryset: QuerySet, view) -> QuerySet:
        lookups, errors = {}, {}
        for name, spec in getattr(view, "query_filters", {}).items():
            raw = request.query_params.get(name, "")
            if not raw:
                continue
            try:
                lookups[spec.lookup] = spec.parse(raw)
            except ValueError as exc:
                errors[name] = [str(exc)]
        if errors:
            raise ValidationError(errors)
        return queryset.filter(**lookups)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        filters_ = getattr(view, "query_filters", {})
        return [spec.openapi_parameter(name) for name, spec in filters_.items()]


def record_change(request: Request, obj, flag: int, message: str) -> None:
    """Write the admin's LogEntry for a change made through the API (tenant history, audit)."""
    LogEntry.objects.log_actions(
        user_id=request.user.pk, queryset=[obj], action_flag=flag,
        change_message=message, single_object=True,
    )  # fmt: skip


class NotFoundProblemMixin:
    """A missing object is DRF's NotFound, so the problem body says NOT_FOUND.

    (get_object() raises Django's Http404, which the problem handler does not map yet.)
    """

    def get_object(self):
        try:
            return super().get_object()
        except Http404 as exc:
            raise NotFound() from exc


class ManagementViewSet(NotFoundProblemMixin, viewsets.ModelViewSet):
    """CRUD for staff: filtered, searchable, ordered, paginated, every change logged."""

    filter_backends = (QueryParamFilterBackend, filters.SearchFilter, filters.OrderingFilter)
    query_filters: dict[str, QueryFilter] = {}

    def perform_create(self, serializer) -> None:
        with transaction.atomic():
            serializer.save()
            record_change(self.request, serializer.instance, ADDITION, "Added through the API.")

    def perform_update(self, serializer) -> None:
        changed = ", ".join(sorted(serializer.validated_data)) or "nothing"
        with transaction.atomic():
            serializer.save()
            record_change(self.request, serializer.instance, CHANGE, f"Changed {changed} through the API.")

    def perform_destroy(self, instance) -> None:
        with transaction.atomic():
            record_change(self.request, instance, DELETION, "Deleted through the API.")
            instance.delete()

    def destroy(self, request: Request, *args, **kwargs):
        try:
            return super().destroy(request, *args, **kwargs)
        except ProtectedError as exc:
            blockers = sorted({str(obj._meta.verbose_name_plural) for obj in exc.protected_objects})
            return problem_response(
                request,
                "CONFLICT",
                f"Still referenced by {', '.join(blockers)}: remove those first.",
            )


class NoBody(serializers.Serializer):
    """Actions that take no request body (the browsable API shows no form for them)."""


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
    """Every target's breaker as this instance sees it; a reset reaches every instance."""

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
