from datetime import timedelta

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from tenancy.choices import Plan, Role, SubscriptionStatus

__all__ = ["DemoSession", "Subscription", "Tenant", "User"]

DEFAULT_GRACE_DAYS = 7


class Tenant(models.Model):
    """A customer organisation: its users, keys and alerts are isolated from other tenants'."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=50, unique=True, help_text="Sent upstream as X-Tenant-ID.")
    plan = models.CharField(max_length=32, choices=Plan.choices, default=Plan.STANDARD)
    read_only = models.BooleanField(default=False)
    read_only_reason = models.CharField(max_length=300, blank=True)
    is_demo = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    """A tenant's billing state; the data plane refuses traffic once it lapses past its grace."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="subscription")
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    current_period_end = models.DateTimeField()
    grace_days = models.PositiveSmallIntegerField(default=DEFAULT_GRACE_DAYS)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant__name"]

    def __str__(self) -> str:
        return f"{self.tenant}: {self.get_status_display()} until {self.current_period_end:%Y-%m-%d}"

    @property
    def grace_ends_at(self):
        return self.current_period_end + timedelta(days=self.grace_days)


class User(AbstractUser):
    """A person who logs in: staff in the admin, or a tenant's member calling the API."""

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="users"
    )
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
