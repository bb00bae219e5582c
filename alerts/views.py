"""POST /api/v1/alerts (scope alerts:publish or staff) and GET /api/v1/alerts (own tenant)."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from alerts.models import Alert
from alerts.publishing import publish_alert
from alerts.serializers import AlertSerializer, PublishAlertSerializer
from tenancy.authentication import GatewayIdentityAuthentication, caller_scopes
from tenancy.models import Tenant

__all__ = ["AlertsView"]

PUBLISH_SCOPE = "alerts:publish"


class AlertsView(generics.ListAPIView):
    # Client tokens are verified by the one policy chain at the door (proxy.policy.EndpointDoor).
    authentication_classes = [GatewayIdentityAuthentication, TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    serializer_class = AlertSerializer

    def get_queryset(self):
        alerts = Alert.objects.select_related("tenant")
        user = self.request.user
        if user.is_staff and not getattr(user, "tenant_id", None):
            slug = self.request.query_params.get("tenant")
            return alerts.filter(tenant__slug=slug) if slug else alerts
        if not getattr(user, "tenant_id", None):
            return alerts.none()
        return alerts.filter(tenant_id=user.tenant_id)

    @extend_schema(request=PublishAlertSerializer, responses={201: AlertSerializer}, tags=["alerts"])
    def post(self, request):
        body = PublishAlertSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        tenant = self._target_tenant(request, body.validated_data.get("tenant"))
        with transaction.atomic():
            alert = Alert.objects.create(
                tenant=tenant,
                severity=body.validated_data["severity"],
                message=body.validated_data["message"],
                service=body.validated_data.get("service", ""),
            )
            publish_alert(alert)
        return Response(AlertSerializer(alert).data, status=status.HTTP_201_CREATED)

    @staticmethod
    def _target_tenant(request, requested: str | None) -> Tenant:
        user = request.user
        if user.is_staff:
            slug = requested or (user.tenant.slug if getattr(user, "tenant_id", None) else None)
            if not slug:
                raise ValidationError({"tenant": "Staff must name the tenant to alert."})
            tenant = Tenant.objects.filter(slug=slug).first()
            if tenant is None:
                raise ValidationError({"tenant": f"No tenant {slug!r}."})
            return tenant
        if PUBLISH_SCOPE not in caller_scopes(request):
            raise PermissionDenied("Publishing alerts needs the alerts:publish scope.")
        if not getattr(user, "tenant_id", None):
            raise PermissionDenied("These credentials belong to no tenant.")
        if requested and requested != user.tenant.slug:
            raise PermissionDenied("You may only publish alerts to your own tenant.")
        return user.tenant
