"""PluginConfig in the admin: pick an installed plugin, a scope, a priority and a config that
its JSON Schema accepts (errors name the bad value's pointer); plugins refused at load are
listed with the reason on the list page."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from gateway_project.web.admin import AdminLayoutMixin, JSONObjectField
from plugins.discovery import catalogue
from plugins.models import PluginConfig


class PluginConfigForm(forms.ModelForm):
    """`plugin` as a choice of the installed plugins (and the saved value, should it be gone)."""

    config = JSONObjectField(required=False, help_text=PluginConfig._meta.get_field("config").help_text)

    class Meta:
        model = PluginConfig
        fields = ("plugin", "enabled", "service", "tenant", "priority", "config")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        names = sorted(catalogue().plugins)
        current = self.instance.plugin if self.instance.pk else ""
        if current and current not in names:
            names.append(current)
        self.fields["plugin"] = forms.ChoiceField(
            choices=[(name, name) for name in names], help_text="An installed plugin (see the list page)."
        )


@admin.register(PluginConfig)
class PluginConfigAdmin(AdminLayoutMixin, admin.ModelAdmin):
    form = PluginConfigForm
    list_display = ("plugin", "scope_display", "enabled", "priority", "updated_at")
    list_editable = ("enabled",)
    list_filter = ("enabled", "plugin")
    list_select_related = ("service", "tenant")
    search_fields = ("plugin", "service__slug", "tenant__slug")
    autocomplete_fields = ("service", "tenant")
    readonly_fields = ("schema_display", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("plugin", "enabled", "priority")}),
        ("Scope", {"fields": ("service", "tenant")}),
        ("Config", {"fields": ("config", "schema_display")}),
        ("Timestamps", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="Scope")
    def scope_display(self, config: PluginConfig) -> str:
        return f"{config.scope.label} ({config.scope_label})"

    @admin.display(description="Config schema")
    def schema_display(self, config: PluginConfig) -> str:
        plugin = catalogue().get(config.plugin) if config.plugin else None
        if plugin is None:
            return "Choose a plugin and save to see its schema."
        return format_html("<pre>{}</pre>", json.dumps(plugin.config_schema, indent=2))

    def changelist_view(self, request, extra_context=None):
        failures = catalogue().failures
        if failures:
            items = format_html_join("", "<li>{}: {}</li>", sorted(failures.items()))
            messages.error(request, format_html("Plugins refused at load:<ul>{}</ul>", items))
        return super().changelist_view(request, extra_context)
