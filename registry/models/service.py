import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from gateway_project.core.tls import TlsFiles, target_tls_errors
from registry.choices import LoadBalancing
from registry.constants import (
    ALL_METHODS,
    BREAKER_DEFAULTS,
    BREAKER_FAILURE_THRESHOLD_RANGE,
    BREAKER_FAILURE_WINDOW_RANGE,
    BREAKER_MINIMUM_THROUGHPUT_RANGE,
    BREAKER_RECOVERY_TIMEOUT_RANGE,
    BREAKER_SUCCESS_THRESHOLD_RANGE,
    CACHE_TTL_RANGE,
    CONNECT_TIMEOUT_RANGE,
    DEFAULT_HEALTH_INTERVAL_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    DESCRIPTION_MAX_LENGTH,
    HEALTH_INTERVAL_RANGE,
    MAX_BODY_BYTES_RANGE,
    READ_TIMEOUT_RANGE,
    RETRIES_RANGE,
    TARGET_WEIGHT_RANGE,
)
from registry.validators import (
    clean_path_error,
    in_range,
    json_nulls_to_defaults,
    normalize_prefix,
    validate_cidr_list,
    validate_finite,
    validate_header_transforms,
    validate_lowercase_slug,
    validate_method_list,
    validate_path_list,
    validate_path_prefix,
    validate_role_list,
    validate_scope_list,
    validate_slug_list,
    validate_upstream_url,
    validate_version_label,
)

__all__ = ["Service", "ServiceVersion", "Target", "TargetHealthCheck"]

_ROUTABLE_PREFIX = re.compile(r"^/api/v[0-9]+(/[a-z0-9][a-z0-9._-]*)+$")


def _all_methods() -> list[str]:
    return list(ALL_METHODS)


class Service(models.Model):
    """An upstream service reachable under a path prefix, with its routing and protection rules."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(
        max_length=50,
        unique=True,
        validators=[validate_lowercase_slug],
        help_text="Lowercase; used in metrics and logs.",
    )
    description = models.TextField(
        blank=True,
        max_length=DESCRIPTION_MAX_LENGTH,
        validators=[MaxLengthValidator(DESCRIPTION_MAX_LENGTH)],
    )
    path_prefix = models.CharField(
        max_length=200,
        unique=True,
        validators=[validate_path_prefix],
        help_text="Client-facing prefix, e.g. /api/v1/sales.",
    )
    shadows = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_slug_list],
        help_text="Slugs of services whose paths this prefix knowingly takes over "
        "(a prefix below theirs wins the longest-prefix match).",
    )
    upstream_path = models.CharField(
        max_length=200,
        blank=True,
        help_text="Replaces the prefix upstream: '' sends /api/v1/sales/x as /x.",
    )
    load_balancing = models.CharField(
        max_length=32, choices=LoadBalancing.choices, default=LoadBalancing.WEIGHTED_ROUND_ROBIN
    )
    connect_timeout = models.FloatField(
        default=2.0,
        validators=[validate_finite, *in_range(CONNECT_TIMEOUT_RANGE)],
        help_text="Seconds.",
    )
    read_timeout = models.FloatField(
        default=30.0,
        validators=[validate_finite, *in_range(READ_TIMEOUT_RANGE)],
        help_text="Seconds.",
    )
    retries = models.PositiveSmallIntegerField(default=2, validators=in_range(RETRIES_RANGE))
    allowed_methods = models.JSONField(default=_all_methods, validators=[validate_method_list])
    auth_required = models.BooleanField(default=True)
    public_paths = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_path_list],
        help_text='Paths below the prefix that need no authentication, e.g. ["/public"].',
    )
    read_roles = models.JSONField(default=list, blank=True, validators=[validate_role_list])
    read_scopes = models.JSONField(default=list, blank=True, validators=[validate_scope_list])
    write_roles = models.JSONField(default=list, blank=True, validators=[validate_role_list])
    write_scopes = models.JSONField(default=list, blank=True, validators=[validate_scope_list])
    breaker_failure_threshold = models.PositiveSmallIntegerField(
        default=BREAKER_DEFAULTS["failure_threshold"],
        validators=in_range(BREAKER_FAILURE_THRESHOLD_RANGE),
    )
    breaker_failure_window = models.PositiveIntegerField(
        default=BREAKER_DEFAULTS["failure_window"],
        validators=in_range(BREAKER_FAILURE_WINDOW_RANGE),
        help_text="Seconds.",
    )
    breaker_minimum_throughput = models.PositiveSmallIntegerField(
        default=BREAKER_DEFAULTS["minimum_throughput"],
        validators=in_range(BREAKER_MINIMUM_THROUGHPUT_RANGE),
    )
    breaker_recovery_timeout = models.FloatField(
        default=BREAKER_DEFAULTS["recovery_timeout"],
        validators=[validate_finite, *in_range(BREAKER_RECOVERY_TIMEOUT_RANGE)],
        help_text="Seconds.",
    )
    breaker_success_threshold = models.PositiveSmallIntegerField(
        default=BREAKER_DEFAULTS["success_threshold"],
        validators=in_range(BREAKER_SUCCESS_THRESHOLD_RANGE),
    )
    health_path = models.CharField(max_length=200, default="/health")
    health_interval = models.PositiveIntegerField(
        default=DEFAULT_HEALTH_INTERVAL_SECONDS,
        validators=in_range(HEALTH_INTERVAL_RANGE),
        help_text="Seconds.",
    )
    websocket_enabled = models.BooleanField(default=False)
    max_body_bytes = models.PositiveBigIntegerField(
        default=DEFAULT_MAX_BODY_BYTES, validators=in_range(MAX_BODY_BYTES_RANGE)
    )
    enabled = models.BooleanField(default=True)
    cache_ttl = models.PositiveIntegerField(
        default=0,
        validators=in_range(CACHE_TTL_RANGE),
        help_text="Seconds to cache GET/HEAD responses per tenant; 0 turns caching off.",
    )
    cache_generation = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Bumped by a purge: every instance stops using older entries.",
    )
    default_version = models.CharField(
        max_length=20,
        default="1",
        validators=[validate_version_label],
        help_text="Version served when a request names none.",
    )
    ip_allow = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_cidr_list],
        help_text="Client networks allowed to call the service; empty: everyone.",
    )
    ip_deny = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_cidr_list],
        help_text="Client networks refused (checked before the allowlist).",
    )
    header_transforms = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_header_transforms],
        help_text='{"request": {"add": {}, "remove": [], "rename": {}}, "response": {...}}; '
        "the gateway's own headers cannot be changed.",
    )
    openapi_path = models.CharField(
        max_length=200,
        blank=True,
        help_text="Path of the service's OpenAPI document (e.g. /openapi.json) for /api/v1/docs.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["path_prefix"]
        constraints = [
            # With unique=True this makes slugs unique ignoring case, in the database too.
            models.CheckConstraint(condition=models.Q(slug=Lower("slug")), name="service_slug_lowercase"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.path_prefix})"

    def purge_cache(self) -> None:
        """Invalidate every cached response of the service on every instance (via the snapshot)."""
        self.cache_generation += 1
        self.save(update_fields=["cache_generation", "updated_at"])

    def clean(self) -> None:
        json_nulls_to_defaults(self)
        self.path_prefix = normalize_prefix(self.path_prefix or "")
        self.allowed_methods = sorted({m.upper() for m in self.allowed_methods or []})
        if not self.allowed_methods:
            raise ValidationError({"allowed_methods": "Allow at least one method."})
        if self.upstream_path and not self.upstream_path.startswith("/"):
            raise ValidationError({"upstream_path": "Start the rewrite with '/'."})
        self.upstream_path = self.upstream_path.rstrip("/")
        if not self.health_path.startswith("/"):
            raise ValidationError({"health_path": "Start the health path with '/'."})
        errors = {
            name: error
            for name in ("upstream_path", "health_path", "openapi_path")
            if getattr(self, name) and (error := clean_path_error(getattr(self, name)))
        }
        if errors:
            raise ValidationError(errors)
        self._refuse_unconfirmed_shadowing()

    def _refuse_unconfirmed_shadowing(self) -> None:
        taken = [s for s in self.shadowed_services() if s.slug not in (self.shadows or [])]
        if taken:
            names = ", ".join(f"'{s.slug}' ({s.path_prefix})" for s in taken)
            raise ValidationError(
                {
                    "path_prefix": f"{self.path_prefix} would take over paths of {names}: the "
                    "longest prefix wins. Add the slug to shadows to confirm."
                },
                code="shadows_service",
            )

    def shadowed_services(self) -> list["Service"]:
        """Other services some of whose requests this prefix would take over.

        Routing picks the longest registered prefix (ending at a segment boundary), so
        `/api/v1/sales/x` takes `/api/v1/sales/x/...` from the service at `/api/v1/sales`,
        and `/api/v2/sales[/x]` takes version-2 requests from a service at `/api/v1/sales`
        that publishes version 2 (its `/api/v2/sales` alias). The reverse takes nothing:
        registering `/api/v1/sales` while `/api/v1/sales/x` exists leaves that subtree with
        the longer prefix, so it needs no confirmation.
        """
        if not _ROUTABLE_PREFIX.match(self.path_prefix or ""):
            return []  # refused by the prefix validator; nothing to compare
        segments = self.path_prefix.split("/")  # "", "api", "v1", "sales", ...
        version = segments[2][1:]
        below = Q(path_prefix__in=["/".join(segments[:end]) for end in range(4, len(segments))])
        for end in range(4, len(segments) + 1):
            rest = re.escape("/" + "/".join(segments[3:end]))
            below |= Q(path_prefix__regex=rf"^/api/v[0-9]+{rest}$", versions__version=version)
        others = Service.objects.filter(below).exclude(path_prefix=self.path_prefix)
        return list(others.exclude(pk=self.pk).distinct().order_by("path_prefix"))


class Target(models.Model):
    """One upstream instance of a service; traffic is shared among enabled, healthy targets."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="targets")
    url = models.CharField(
        max_length=500, validators=[validate_upstream_url], help_text="e.g. http://10.0.0.5:8080"
    )
    weight = models.PositiveIntegerField(default=100, validators=in_range(TARGET_WEIGHT_RANGE))
    enabled = models.BooleanField(default=True)
    demo_only = models.BooleanField(default=False, help_text="Receives only demo-session traffic.")
    healthy = models.BooleanField(default=True, help_text="Set by the health sweep.")
    last_checked_at = models.DateTimeField(null=True, blank=True)
    breaker_reset_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by a staff reset; every instance closes its breaker."
    )
    version = models.CharField(
        max_length=20,
        blank=True,
        validators=[validate_version_label],
        help_text="API version this target serves; empty: the default.",
    )
    tls_verify = models.BooleanField(
        default=True, help_text="Verify an https:// target's certificate (turn off only for a lab)."
    )
    tls_ca_file = models.CharField(
        max_length=500,
        blank=True,
        help_text="PEM CA bundle (path on the gateway hosts); empty: the system's.",
    )
    tls_client_cert_file = models.CharField(
        max_length=500, blank=True, help_text="PEM client certificate for mTLS (path on the gateway hosts)."
    )
    tls_client_key_file = models.CharField(
        max_length=500, blank=True, help_text="Its private key, if not in the certificate file."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service__path_prefix", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "url", "version"], name="unique_target_url_per_service_version"
            )
        ]

    def __str__(self) -> str:
        return self.url

    def clean(self) -> None:
        self.url = (self.url or "").rstrip("/")
        errors = target_tls_errors(self.url, TlsFiles.of(self))
        if errors:
            raise ValidationError(errors)


class ServiceVersion(models.Model):
    """An API version of a service, reachable as /api/v<N>/<name> or with Accept-Version: <N>."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=20, validators=[validate_version_label])
    deprecated = models.BooleanField(default=False, help_text="Responses carry a Deprecation header.")
    deprecated_at = models.DateTimeField(null=True, blank=True)
    sunset_at = models.DateTimeField(null=True, blank=True, help_text="Announced in the Sunset header.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service", "version"]
        constraints = [
            models.UniqueConstraint(fields=["service", "version"], name="unique_version_per_service")
        ]

    def __str__(self) -> str:
        return f"{self.service.slug} v{self.version}"


class TargetHealthCheck(models.Model):
    """One health-sweep result for a target; a bounded history is kept per target."""

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="health_checks")
    ok = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.target} {'ok' if self.ok else 'failing'} at {self.created_at:%H:%M:%S}"
