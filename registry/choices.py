"""Enumerations of the registry."""

from django.db import models

__all__ = ["ChangeKind", "FailMode", "LoadBalancing", "Plan", "RateAlgorithm", "RateScope", "Role", "Scope"]


class LoadBalancing(models.TextChoices):
    WEIGHTED_ROUND_ROBIN = "weighted_round_robin", "Weighted round robin"
    LEAST_OUTSTANDING = "least_outstanding", "Least outstanding requests"


class RateScope(models.TextChoices):
    GLOBAL = "global", "Global"
    TENANT = "tenant", "Per tenant"
    USER = "user", "Per user"
    API_KEY = "api_key", "Per API key"
    IP = "ip", "Per client IP"


class RateAlgorithm(models.TextChoices):
    SLIDING_WINDOW = "sliding_window", "Sliding window"
    GCRA = "gcra", "GCRA with burst"


class FailMode(models.TextChoices):
    OPEN = "open", "Fail open (in-process limiter takes over)"
    CLOSED = "closed", "Fail closed (503)"


class Role(models.TextChoices):
    """Roles in increasing order of privilege: each includes the ones before it."""

    VIEWER = "viewer", "Viewer"
    MEMBER = "member", "Member"
    STAFF = "staff", "Staff"
    ADMIN = "admin", "Admin"


class Scope(models.TextChoices):
    READ = "read", "read"
    WRITE = "write", "write"
    ADMIN = "admin", "admin"
    ALERTS_PUBLISH = "alerts:publish", "alerts:publish"


class Plan(models.TextChoices):
    """A tenant's plan; rate policies may apply to one plan only (SPEC sections 7 and 20)."""

    FREE = "free", "Free"
    STANDARD = "standard", "Standard"
    ENTERPRISE = "enterprise", "Enterprise"


class ChangeKind(models.TextChoices):
    """Which part of the data plane's snapshot a saved or deleted object changes (SPEC 23)."""

    SERVICE = "service", "Service (with its targets and versions)"
    TENANT = "tenant", "Tenant (with its subscription)"
    API_KEY = "api_key", "API key"
    RATE_POLICY = "rate_policy", "Rate policy"
    IDENTITY_PROVIDER = "identity_provider", "Identity provider"
    ALL = "all", "Everything (instances rebuild the whole snapshot)"
