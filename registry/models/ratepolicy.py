from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from registry.choices import FailMode, Plan, RateAlgorithm, RateScope, Role
from registry.constants import RATE_BURST_RANGE, RATE_LIMIT_RANGE, RATE_WINDOW_SECONDS_RANGE
from registry.validators import in_range, json_nulls_to_defaults, validate_method_list

__all__ = ["RatePolicy"]

# Policy names appear as Structured Field strings in RateLimit headers: keep them tame.
_policy_name = RegexValidator(r"^[a-z0-9][a-z0-9_-]{0,63}$", "Lowercase letters, digits, '-', '_'.")


class RatePolicy(models.Model):
    """A limit of `limit` requests per `window_seconds` per scope key; all matching apply at once."""

    name = models.CharField(max_length=64, unique=True, validators=[_policy_name])
    scope = models.CharField(max_length=16, choices=RateScope.choices, default=RateScope.USER)
    service = models.ForeignKey(
        "registry.Service",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rate_policies",
        help_text="Empty: every service.",
    )
    methods = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_method_list],
        help_text="Empty: every method.",
    )
    role = models.CharField(max_length=16, choices=Role.choices, blank=True)
    plan = models.CharField(
        max_length=32,
        choices=Plan.choices,
        blank=True,
        help_text="Applies to tenants on this plan; empty: every plan.",
    )
    limit = models.PositiveIntegerField(validators=in_range(RATE_LIMIT_RANGE))
    window_seconds = models.PositiveIntegerField(validators=in_range(RATE_WINDOW_SECONDS_RANGE))
    burst = models.PositiveIntegerField(
        default=0,
        validators=in_range(RATE_BURST_RANGE),
        help_text="GCRA only: requests allowed at once on top of the steady rate.",
    )
    algorithm = models.CharField(
        max_length=16, choices=RateAlgorithm.choices, default=RateAlgorithm.SLIDING_WINDOW
    )
    fail_mode = models.CharField(max_length=8, choices=FailMode.choices, default=FailMode.OPEN)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "rate policies"

    def __str__(self) -> str:
        return f"{self.name}: {self.limit}/{self.window_seconds}s per {self.scope}"

    def clean(self) -> None:
        json_nulls_to_defaults(self)
        self.methods = sorted({m.upper() for m in self.methods or []})
        if self.burst and self.algorithm != RateAlgorithm.GCRA:
            raise ValidationError({"burst": "Burst applies to the GCRA algorithm only."})
