from datetime import timedelta

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from registry.validators import (
    in_range,
    json_nulls_to_defaults,
    validate_cidr_list,
    validate_lowercase_slug,
    validate_outbound_url,
    validate_role_mapping,
    validate_string_list,
)
from tenancy.choices import Plan, Role, SubscriptionStatus
from tenancy.constants import (
    DEFAULT_GRACE_DAYS,
    GRACE_DAYS_RANGE,
    MONTHLY_QUOTA_RANGE,
    PERIOD_END_MAX_DAYS_AHEAD,
)

__all__ = [
    "AuditEvent",
    "DemoSession",
    "IdentityProvider",
    "Plan",
    "ServiceQuota",
    "Subscription",
    "Tenant",
    "User",
]


class Tenant(models.Model):
    """A customer organisation: its users, keys and alerts are isolated from other tenants'."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(
        max_length=50,
        unique=True,
        validators=[validate_lowercase_slug],
        help_text="Lowercase; sent upstream as X-Tenant-ID.",
    )
    plan = models.CharField(max_length=32, choices=Plan.choices, default=Plan.STANDARD)
    read_only = models.BooleanField(default=False)
    read_only_reason = models.CharField(max_length=300, blank=True)
    is_demo = models.BooleanField(default=False)
    mfa_required = models.BooleanField(
        default=False, help_text="Users of this tenant must give a one-time code to log in."
    )
    ip_allow = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_cidr_list],
        help_text="Client networks this tenant's credentials may be used from; empty: anywhere.",
    )
    ip_deny = models.JSONField(default=list, blank=True, validators=[validate_cidr_list])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # With unique=True this makes slugs unique ignoring case, in the database too.
            models.CheckConstraint(condition=models.Q(slug=Lower("slug")), name="tenant_slug_lowercase"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        json_nulls_to_defaults(self)


class Plan(models.Model):
    """What a subscription buys: a monthly request quota, per-service quotas and default rate
    policies (SPEC section 20). Quotas count per calendar month (UTC), cluster-exactly."""

    name = models.CharField(
        max_length=32,
        unique=True,
        validators=[validate_lowercase_slug],
        help_text="Lowercase, e.g. starter; shown to tenants and in RateLimit headers.",
    )
    description = models.CharField(max_length=200, blank=True)
    monthly_request_quota = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        validators=in_range(MONTHLY_QUOTA_RANGE),
        help_text="Requests per calendar month over every service; empty: unlimited.",
    )
    rate_policies = models.ManyToManyField(
        "registry.RatePolicy",
        blank=True,
        related_name="plans",
        help_text="Default rate policies: a policy listed by a plan applies to that plan's tenants only.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ServiceQuota(models.Model):
    """A plan's monthly request quota on one service, on top of the plan's overall quota."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="service_quotas")
    service = models.ForeignKey("registry.Service", on_delete=models.CASCADE, related_name="quotas")
    monthly_request_quota = models.PositiveBigIntegerField(validators=in_range(MONTHLY_QUOTA_RANGE))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["plan__name", "service__slug"]
        constraints = [models.UniqueConstraint(fields=["plan", "service"], name="service_quota_unique")]

    def __str__(self) -> str:
        return f"{self.plan}: {self.monthly_request_quota}/month on {self.service}"


class Subscription(models.Model):
    """A tenant's billing state; the data plane refuses traffic once it lapses past its grace."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="subscription")
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    current_period_end = models.DateTimeField()
    grace_days = models.PositiveSmallIntegerField(
        default=DEFAULT_GRACE_DAYS,
        validators=in_range(GRACE_DAYS_RANGE),
        help_text="Days a lapsed tenant keeps access after the period ends.",
    )
    plan = models.ForeignKey(
        Plan,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="subscriptions",
        help_text="Its quotas and default rate policies; empty: no quota.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant__name"]

    def __str__(self) -> str:
        return f"{self.tenant}: {self.get_status_display()} until {self.current_period_end:%Y-%m-%d}"

    def clean(self) -> None:
        latest = timezone.now() + timedelta(days=PERIOD_END_MAX_DAYS_AHEAD)
        if self.current_period_end is not None and self.current_period_end > latest:
            raise ValidationError(
                {"current_period_end": f"Choose a date before {latest:%Y-%m-%d}."},
                code="period_end_too_far",
            )

    @property
    def grace_ends_at(self):
        return self.current_period_end + timedelta(days=self.grace_days)


class User(AbstractUser):
    """A person who logs in: staff in the admin, or a tenant's member calling the API."""

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="users")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)

    class Meta(AbstractUser.Meta):
        ordering = ["username"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"), condition=~models.Q(email=""), name="unique_user_email_ci"
            )
        ]

    def __str__(self) -> str:
        return self.email or self.username


class DemoSession(models.Model):
    """A short-lived anonymous session in a demo tenant, carried in a token's `demo_session`."""

    key = models.CharField(max_length=64, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="demo_sessions")
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"demo {self.key[:8]} in {self.tenant}"

    @property
    def is_active(self) -> bool:
        return self.expires_at > timezone.now()


class IdentityProvider(models.Model):
    """An external OAuth 2.0 / OIDC issuer whose tokens the data plane accepts (SPEC section 15).

    Tokens are verified against the issuer's JWKS (cached, refreshed on an unknown kid) or,
    for opaque tokens, an RFC 7662 introspection endpoint; claims map to tenant, roles, scopes.
    """

    name = models.CharField(max_length=100, unique=True)
    issuer = models.CharField(max_length=300, unique=True, help_text="The `iss` claim, exactly.")
    jwks_url = models.URLField(max_length=500, blank=True)
    introspection_url = models.URLField(max_length=500, blank=True)
    client_id = models.CharField(max_length=200, blank=True, help_text="For introspection (Basic auth).")
    client_secret = models.CharField(max_length=300, blank=True)
    audience = models.CharField(max_length=300, blank=True, help_text="Required `aud`; empty: not checked.")
    algorithms = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_string_list],
        help_text='Accepted JWS algorithms, default ["RS256"].',
    )
    tenant_claim = models.CharField(max_length=100, default="tenant")
    default_tenant = models.ForeignKey(
        Tenant,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Tenant for tokens without the tenant claim.",
    )
    roles_claim = models.CharField(max_length=100, default="roles")
    scopes_claim = models.CharField(max_length=100, default="scope")
    role_mapping = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_role_mapping],
        help_text='External role -> gateway role, e.g. {"bakery-admin": "admin"}.',
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    FETCHED_URL_FIELDS = ("jwks_url", "introspection_url")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.issuer})"

    def clean(self) -> None:
        json_nulls_to_defaults(self)
        self._check_fetched_urls()

    def _check_fetched_urls(self) -> None:
        """The gateway fetches these URLs itself: the outbound guard judges them at save.

        Checked here rather than as field validators so the rule needs no migration; the
        admin and the API both reach it through `full_clean()`.
        """
        errors = {}
        for name in self.FETCHED_URL_FIELDS:
            value = getattr(self, name)
            if not value:
                continue
            try:
                validate_outbound_url(value)
            except ValidationError as exc:
                errors[name] = exc.messages
        if errors:
            raise ValidationError(errors)


class AuditEvent(models.Model):
    """Who changed what, when, from where, with before/after values (GDPR access requests)."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_repr = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=20, help_text="admin, api or system")
    action = models.CharField(max_length=20, help_text="create, update or delete")
    model = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=300)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    tenant_slug = models.CharField(max_length=50, blank=True, db_index=True)
    changes = models.JSONField(default=dict, help_text="field -> [before, after]")
    request_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.actor_repr or 'system'} {self.action} {self.model} {self.object_repr}"
