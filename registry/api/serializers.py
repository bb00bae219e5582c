"""Management API bodies for the registry: services with nested targets, policies, API keys.

Every writable serializer runs the model's own validation (field validators, `clean()`,
uniqueness) before anything is written, so the API refuses exactly what the admin refuses.
"""

from __future__ import annotations

import copy
import json

from django.db import models, transaction
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.settings import api_settings
from rest_framework.utils import html
from rest_framework.utils.serializer_helpers import JSONBoundField

from gateway_project.core import breaker_board
from gateway_project.web.serializers import FullCleanModelSerializer, SlugKeyField, clean_model_instance
from registry.models import ApiKey, RatePolicy, Service, ServiceVersion, Target, TargetHealthCheck

__all__ = [
    "ApiKeySerializer",
    "ApiKeyWithSecretSerializer",
    "CircuitBreakerSerializer",
    "ConfigVersionSerializer",
    "HealthCheckRequestSerializer",
    "HealthReportSerializer",
    "RatePolicySerializer",
    "ServiceSerializer",
    "TargetSerializer",
]


# --- Services and targets ---------------------------------------------------------------

_TARGET_READ_ONLY = ("healthy", "last_checked_at", "breaker_reset_at", "created_at", "updated_at")


TARGETS_AS_JSON_HELP = (
    'In this form: a JSON list, e.g. [{"url": "http://10.0.0.5:8080", "weight": 1}]. '
    "On update the list is the full set: targets left out are deleted."
)
TARGETS_NOT_JSON = 'Send the targets as a JSON list, e.g. [{{"url": "http://10.0.0.5:8080"}}]: {error}.'
TARGETS_TEXTAREA_ROWS = 8


class JsonTextTargetList(serializers.ListSerializer):
    """The nested target list, also editable in the browsable API's HTML form as JSON text.

    DRF renders nested lists in HTML forms as "not supported"; here the form shows a textarea
    holding the list as JSON and a form post's text is parsed back, so a service and its
    targets can be created from the browser as from a JSON client.
    """

    def get_value(self, dictionary):
        if not html.is_html_input(dictionary):
            return super().get_value(dictionary)
        text = dictionary.get(self.field_name, "")
        if not text.strip():
            return empty
        try:
            return json.loads(text)
        except ValueError as exc:
            return _UnparsedTargets(str(exc))

    def to_internal_value(self, data):
        if isinstance(data, _UnparsedTargets):
            message = TARGETS_NOT_JSON.format(error=data.error)
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [message]})
        return super().to_internal_value(data)


class _UnparsedTargets:
    """Form text that was not JSON, carried to validation so the error names the field."""

    def __init__(self, error: str) -> None:
        self.error = error


class _TargetsBoundField(JSONBoundField):
    """The targets in an HTML form: JSON text, with help that says so."""

    help_text = TARGETS_AS_JSON_HELP


class ServiceTargetSerializer(serializers.ModelSerializer):
    """A target inside a service body: matched by `id` on update, created when `id` is absent."""

    id = serializers.IntegerField(required=False, help_text="Existing target's id; omit for a new one.")

    class Meta:
        model = Target
        fields = ("id", "url", "weight", "enabled", "demo_only", "version", *_TARGET_READ_ONLY)
        read_only_fields = _TARGET_READ_ONLY
        list_serializer_class = JsonTextTargetList


class ServiceSerializer(FullCleanModelSerializer):
    """A service and its targets, saved together or not at all."""

    targets = ServiceTargetSerializer(
        many=True,
        required=False,
        help_text="On update the list is the full set: targets left out are deleted. "
        "Omit it on PATCH to keep the targets as they are.",
        style={"base_template": "textarea.html", "rows": TARGETS_TEXTAREA_ROWS},
    )

    class Meta:
        model = Service
        fields = (
            "id", "name", "slug", "description", "path_prefix", "shadows", "upstream_path", "load_balancing",
            "connect_timeout", "read_timeout", "retries", "allowed_methods", "auth_required",
            "public_paths", "read_roles", "read_scopes", "write_roles", "write_scopes",
            "breaker_failure_threshold", "breaker_failure_window", "breaker_minimum_throughput",
            "breaker_recovery_timeout", "breaker_success_threshold", "health_path",
            "health_interval", "websocket_enabled", "max_body_bytes", "enabled", "cache_ttl",
            "default_version", "ip_allow", "ip_deny", "header_transforms", "openapi_path", "targets",
            "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = ("created_at", "updated_at")

    def __getitem__(self, key):
        # The HTML form shows the targets as JSON text (see JsonTextTargetList), with the form's help.
        bound = super().__getitem__(key)
        if key != "targets":
            return bound
        return _TargetsBoundField(bound._field, bound.value, bound.errors)

    def validate(self, attrs: dict) -> dict:
        targets = attrs.pop("targets", None)
        errors = {}
        try:
            attrs = super().validate(attrs)
        except serializers.ValidationError as exc:
            errors.update(exc.detail)
        if targets is None and self.instance is not None and not self.partial:
            errors["targets"] = ["Send the full list of targets on PUT (an empty list removes all)."]
        elif targets is not None:
            try:
                attrs["targets"] = self._validate_targets(targets)
            except serializers.ValidationError as exc:
                errors["targets"] = exc.detail
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def _validate_targets(self, items: list[dict]) -> list[dict]:
        """Validate every target through the model before anything is written."""
        existing = {t.pk: t for t in self.instance.targets.all()} if self.instance else {}
        # Keyed by position, only failing items: the shape DRF gives nested list errors.
        errors, cleaned, seen_urls = {}, [], set()
        for index, item in enumerate(items):
            item_errors, pk = {}, item.get("id")
            if pk is not None and pk not in existing:
                item_errors["id"] = ["No target with this id belongs to this service."]
            base = copy.copy(existing[pk]) if pk in existing else Target()
            try:
                item = {**clean_model_instance(base, item, exclude=("service",)), "id": pk}
            except serializers.ValidationError as exc:
                item_errors.update(exc.detail)
            url = item.get("url", base.url)
            if url in seen_urls:
                item_errors.setdefault("url", []).append("This URL is listed twice.")
            seen_urls.add(url)
            if item_errors:
                errors[index] = item_errors
            cleaned.append(item)
        if errors:
            raise serializers.ValidationError(errors)
        return cleaned

    @transaction.atomic
    def create(self, validated_data: dict) -> Service:
        targets = validated_data.pop("targets", [])
        service = Service.objects.create(**validated_data)
        _sync_targets(service, targets, existing={})
        return service

    @transaction.atomic
    def update(self, instance: Service, validated_data: dict) -> Service:
        targets = validated_data.pop("targets", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        instance.save()
        if targets is not None:
            _sync_targets(instance, targets, existing={t.pk: t for t in instance.targets.all()})
        return instance


def _sync_targets(service: Service, items: list[dict], existing: dict[int, Target]) -> None:
    """Make the service's targets exactly `items`: delete first so a URL can move freely."""
    kept = {item["id"] for item in items if item.get("id") is not None}
    for pk, target in existing.items():
        if pk not in kept:
            target.delete()
    for item in items:
        fields = {name: value for name, value in item.items() if name != "id"}
        target = existing.get(item.get("id")) or Target(service=service)
        for name, value in fields.items():
            setattr(target, name, value)
        target.save()


class ServiceVersionSerializer(FullCleanModelSerializer):
    class Meta:
        model = ServiceVersion
        fields = (
            "id",
            "service",
            "version",
            "deprecated",
            "deprecated_at",
            "sunset_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("created_at", "updated_at")


class TargetSerializer(FullCleanModelSerializer):
    service = SlugKeyField(slug_field="slug", queryset=Service.objects.all())

    class Meta:
        model = Target
        fields = (
            "id",
            "service",
            "url",
            "weight",
            "enabled",
            "demo_only",
            "version",
            "tls_verify",
            "tls_ca_file",
            "tls_client_cert_file",
            "tls_client_key_file",
            *_TARGET_READ_ONLY,
        )
        read_only_fields = _TARGET_READ_ONLY


# --- Circuit breakers and health --------------------------------------------------------


class BreakerInstanceSerializer(serializers.Serializer):
    """One gateway instance's breaker for the target, as that instance last published it."""

    instance = serializers.CharField()
    state = serializers.ChoiceField(choices=breaker_board.STATES)
    failure_count = serializers.IntegerField()
    time_until_retry = serializers.FloatField(help_text="Seconds until a trial request.")
    updated_at = serializers.FloatField(help_text="When the instance published it (epoch seconds).")


class CircuitBreakerSerializer(serializers.ModelSerializer):
    """A target with the breaker state every live instance published (SPEC sections 8, 16):
    `state`, `failure_count` and `time_until_retry` are the most severe instance's."""

    target_id = serializers.IntegerField(source="pk", read_only=True)
    service = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    state = serializers.SerializerMethodField()
    failure_count = serializers.SerializerMethodField()
    time_until_retry = serializers.SerializerMethodField(help_text="Seconds until a trial request.")
    instances = serializers.SerializerMethodField()

    class Meta:
        model = Target
        fields = (
            "target_id", "service", "url", "enabled", "healthy", "state", "failure_count",
            "time_until_retry", "breaker_reset_at", "instances",
        )  # fmt: skip
        read_only_fields = fields

    def _board(self) -> breaker_board.Board:
        board = self.context.get("breaker_board")
        if board is None:  # read once per response, not once per field
            board = self.context["breaker_board"] = breaker_board.read_board()
        return board

    @extend_schema_field(serializers.ChoiceField(choices=breaker_board.STATES))
    def get_state(self, target: Target) -> str:
        return self._board().describe(target.pk)["state"]

    def get_failure_count(self, target: Target) -> int:
        return self._board().describe(target.pk)["failure_count"]

    def get_time_until_retry(self, target: Target) -> float:
        return self._board().describe(target.pk)["time_until_retry"]

    @extend_schema_field(BreakerInstanceSerializer(many=True))
    def get_instances(self, target: Target) -> list[dict]:
        return self._board().per_instance(target.pk)


class HealthCheckResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = TargetHealthCheck
        fields = ("ok", "status_code", "latency_ms", "error", "created_at")
        read_only_fields = fields


class TargetHealthSerializer(serializers.ModelSerializer):
    """A target's health as the last sweep left it, with that sweep's check."""

    target_id = serializers.IntegerField(source="pk", read_only=True)
    service = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    last_check = HealthCheckResultSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Target
        fields = (
            "target_id",
            "service",
            "url",
            "enabled",
            "healthy",
            "last_checked_at",
            "last_check",
        )
        read_only_fields = fields


class HealthReportSerializer(serializers.Serializer):
    last_sweep_at = serializers.DateTimeField(
        allow_null=True, read_only=True, help_text="When the newest stored check ran."
    )
    targets = TargetHealthSerializer(many=True, read_only=True)


class HealthCheckRequestSerializer(serializers.Serializer):
    service = SlugKeyField(
        slug_field="slug",
        queryset=Service.objects.all(),
        required=False,
        help_text="Check only this service's targets; omit to check every enabled target.",
    )


class ConfigVersionSerializer(serializers.Serializer):
    version = serializers.IntegerField(read_only=True, help_text="Moves on every registry change.")


# --- Rate policies and API keys ---------------------------------------------------------


class RatePolicySerializer(FullCleanModelSerializer):
    service = SlugKeyField(
        slug_field="slug",
        queryset=Service.objects.all(),
        required=False,
        allow_null=True,
        help_text="Service slug; null applies the policy to every service.",
    )

    class Meta:
        model = RatePolicy
        fields = (
            "id", "name", "scope", "service", "methods", "role", "plan", "limit",
            "window_seconds", "burst", "algorithm", "fail_mode", "enabled", "created_at",
            "updated_at",
        )  # fmt: skip
        read_only_fields = ("created_at", "updated_at")


class ApiKeySerializer(FullCleanModelSerializer):
    """An API key as it is listed: its visible prefix, never its secret or hash."""

    # The tenant model through the key's foreign key: the registry sits below tenancy.
    tenant = SlugKeyField(
        slug_field="slug", queryset=ApiKey._meta.get_field("tenant").related_model.objects.all()
    )
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = (
            "id", "tenant", "name", "prefix", "scopes", "role", "expires_at", "revoked",
            "revoked_at", "is_active", "last_used_at", "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = (
            "prefix", "revoked", "revoked_at", "last_used_at", "created_at", "updated_at",
        )  # fmt: skip

    def validate_tenant(self, tenant: models.Model) -> models.Model:
        # A key belongs to one tenant for life: moving it would hand a secret to another tenant.
        if self.instance is not None and tenant.pk != self.instance.tenant_id:
            raise serializers.ValidationError("An API key cannot move to another tenant.")
        return tenant

    def create(self, validated_data: dict) -> ApiKey:
        key = ApiKey(**validated_data)
        key.plaintext_secret = key.assign_new_secret()
        key.save()
        return key


class ApiKeyWithSecretSerializer(ApiKeySerializer):
    """The answer to a create or rotate: the only time the plaintext secret is ever sent."""

    secret = serializers.CharField(
        source="plaintext_secret",
        read_only=True,
        help_text="Send it as X-API-Key. Shown once: only its SHA-256 hash is stored.",
    )

    class Meta(ApiKeySerializer.Meta):
        fields = (*ApiKeySerializer.Meta.fields, "secret")
