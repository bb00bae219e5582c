from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from registry.choices import LoadBalancing
from registry.constants import (
    ALL_METHODS,
    BREAKER_DEFAULTS,
    DEFAULT_HEALTH_INTERVAL_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
)
from registry.validators import (
    normalize_prefix,
    validate_cidr_list,
    validate_header_transforms,
    validate_method_list,
    validate_path_list,
    validate_path_prefix,
    validate_string_list,
    validate_upstream_url,
)

__all__ = ["Service", "ServiceVersion", "Target", "TargetHealthCheck"]


def _all_methods() -> list[str]:
    return list(ALL_METHODS)


class Service(models.Model):
    """An upstream service reachable under a path prefix, with its routing and protection rules."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=50, unique=True, help_text="Used in metrics and logs.")
    description = models.TextField(blank=True)
    path_prefix = models.CharField(
        max_length=200,
        unique=True,
        validators=[validate_path_prefix],
        help_text="Client-facing prefix, e.g. /api/v1/sales.",
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
        validators=[MinValueValidator(0.05), MaxValueValidator(60)],
        help_text="Seconds.",
    )
    read_timeout = models.FloatField(
        default=30.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(600)],
        help_text="Seconds.",
    )
    retries = models.PositiveSmallIntegerField(default=2, validators=[MaxValueValidator(5)])
    allowed_methods = models.JSONField(default=_all_methods, validators=[validate_method_list])
    auth_required = models.BooleanField(default=True)
    public_paths = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_path_list],
        help_text='Paths below the prefix that need no authentication, e.g. ["/public"].',
    )
    read_roles = models.JSONField(default=list, blank=True, validators=[validate_string_list])
    read_scopes = models.JSONField(default=list, blank=True, validators=[validate_string_list])
    write_roles = models.JSONField(default=list, blank=True, validators=[validate_string_list])
    write_scopes = models.JSONField(default=list, blank=True, validators=[validate_string_list])
    breaker_failure_threshold = models.PositiveSmallIntegerField(
        default=BREAKER_DEFAULTS["failure_threshold"], validators=[MinValueValidator(1)]
    )
    breaker_failure_window = models.PositiveIntegerField(
        default=BREAKER_DEFAULTS["failure_window"],
        validators=[MinValueValidator(1)],
        help_text="Seconds.",
    )
    breaker_minimum_throughput = models.PositiveSmallIntegerField(
        default=BREAKER_DEFAULTS["minimum_throughput"], validators=[MinValueValidator(1)]
    )
    breaker_recovery_timeout = models.FloatField(
        default=BREAKER_DEFAULTS["recovery_timeout"],
        validators=[MinValueValidator(0.1), MaxValueValidator(3600)],
        help_text="Seconds.",
    )
    breaker_success_threshold = models.PositiveSmallIntegerField(
        default=BREAKER_DEFAULTS["success_threshold"], validators=[MinValueValidator(1)]
    )
    health_path = models.CharField(max_length=200, default="/health")
    health_interval = models.PositiveIntegerField(
        default=DEFAULT_HEALTH_INTERVAL_SECONDS,
        validators=[MinValueValidator(1), MaxValueValidator(86400)],
        help_text="Seconds.",
    )
    websocket_enabled = models.BooleanField(default=False)
    max_body_bytes = models.PositiveBigIntegerField(
        default=DEFAULT_MAX_BODY_BYTES, validators=[MaxValueValidator(1024**3)]
    )
    enabled = models.BooleanField(default=True)
    cache_ttl = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(86400)],
        help_text="Seconds to cache GET/HEAD responses per tenant; 0 turns caching off.",
    )
    cache_generation = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Bumped by a purge: every instance stops using older entries.",
    )
    default_version = models.CharField(
        max_length=20, default="1", help_text="Version served when a request names none."
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

    def __str__(self) -> str:
        return f"{self.name} ({self.path_prefix})"

    def purge_cache(self) -> None:
        """Invalidate every cached response of the service on every instance (via the snapshot)."""
        self.cache_generation += 1
        self.save(update_fields=["cache_generation", "updated_at"])

    def clean(self) -> None:
        self.path_prefix = normalize_prefix(self.path_prefix or "")
        self.allowed_methods = sorted({m.upper() for m in self.allowed_methods or []})
        if not self.allowed_methods:
            raise ValidationError({"allowed_methods": "Allow at least one method."})
        if self.upstream_path and not self.upstream_path.startswith("/"):
            raise ValidationError({"upstream_path": "Start the rewrite with '/'."})
        self.upstream_path = self.upstream_path.rstrip("/")
        if not self.health_path.startswith("/"):
            raise ValidationError({"health_path": "Start the health path with '/'."})


class Target(models.Model):
    """One upstream instance of a service; traffic is shared among enabled, healthy targets."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="targets")
    url = models.CharField(
        max_length=500, validators=[validate_upstream_url], help_text="e.g. http://10.0.0.5:8080"
    )
    weight = models.PositiveIntegerField(default=100, validators=[MaxValueValidator(1000)])
    enabled = models.BooleanField(default=True)
    demo_only = models.BooleanField(default=False, help_text="Receives only demo-session traffic.")
    healthy = models.BooleanField(default=True, help_text="Set by the health sweep.")
    last_checked_at = models.DateTimeField(null=True, blank=True)
    breaker_reset_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by a staff reset; every instance closes its breaker."
    )
    version = models.CharField(
        max_length=20, blank=True, help_text="API version this target serves; empty: the default."
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


class ServiceVersion(models.Model):
    """An API version of a service, reachable as /api/v<N>/<name> or with Accept-Version: <N>."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(
        max_length=20, validators=[RegexValidator(r"^[0-9]{1,4}$", "A number, e.g. 2.")]
    )
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
