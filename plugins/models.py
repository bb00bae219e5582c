"""PluginConfig: one plugin switched on for a scope, with its validated config (SPEC section 19)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from plugins.choices import Scope
from plugins.constants import MAX_PLUGIN_NAME_LENGTH, PRIORITY_BOUND

__all__ = ["PluginConfig"]

# One row per plugin and scope: a second one would make the order ambiguous.
_SCOPE_CONDITIONS = {
    "global": Q(service__isnull=True, tenant__isnull=True),
    "service": Q(service__isnull=False, tenant__isnull=True),
    "tenant": Q(service__isnull=True, tenant__isnull=False),
}


def _scope_constraints() -> list[models.UniqueConstraint]:
    message = "This plugin is already configured for this scope."
    constraints = [
        models.UniqueConstraint(
            fields=["plugin", *fields],
            condition=_SCOPE_CONDITIONS[scope],
            name=f"plugin_config_once_per_{scope}",
            violation_error_message=message,
        )
        for scope, fields in (("global", []), ("service", ["service"]), ("tenant", ["tenant"]))
    ]
    constraints.append(
        models.UniqueConstraint(
            fields=["plugin", "service", "tenant"],
            name="plugin_config_once_per_service_tenant",
            violation_error_message=message,
        )
    )
    return constraints


class PluginConfig(models.Model):
    """A plugin enabled for every request, one service, one tenant, or one tenant on one service."""

    plugin = models.CharField(max_length=MAX_PLUGIN_NAME_LENGTH, help_text="The plugin's name.")
    enabled = models.BooleanField(default=True)
    service = models.ForeignKey(
        "registry.Service",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="plugin_configs",
        help_text="Empty: every service.",
    )
    tenant = models.ForeignKey(
        "tenancy.Tenant",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="plugin_configs",
        help_text="Empty: every caller (tenant plugins run once the caller is authenticated).",
    )
    priority = models.IntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(-PRIORITY_BOUND), MaxValueValidator(PRIORITY_BOUND)],
        help_text="Higher runs first; empty: the plugin's own priority.",
    )
    config = models.JSONField(default=dict, blank=True, help_text="Checked against the plugin's JSON Schema.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["plugin", "pk"]
        verbose_name = "plugin config"
        constraints = _scope_constraints()

    def __str__(self) -> str:
        return f"{self.plugin} ({self.scope_label})"

    @property
    def scope(self) -> Scope:
        if self.service_id and self.tenant_id:
            return Scope.SERVICE_TENANT
        if self.service_id:
            return Scope.SERVICE
        return Scope.TENANT if self.tenant_id else Scope.GLOBAL

    @property
    def scope_label(self) -> str:
        names = [str(getattr(self, f).slug) for f in ("service", "tenant") if getattr(self, f"{f}_id")]
        return " / ".join(names) if names else "global"

    def clean(self) -> None:
        from plugins.validation import config_errors, plugin_class

        try:
            plugin = plugin_class(self.plugin)
        except ValidationError as exc:
            raise ValidationError({"plugin": exc.messages}) from exc
        errors = config_errors(plugin, self.config)
        if errors:
            raise ValidationError({"config": errors})
