"""Admin building blocks shared by the apps: JSON list columns edited as text or checkboxes, and
view-only admins for records the system writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django import forms
from django.utils.text import capfirst

__all__ = [
    "AdminLayoutMixin",
    "ChoiceListField",
    "JSONObjectField",
    "ListFieldsMixin",
    "NetworkListField",
    "ReadOnlyAdminMixin",
    "StringListField",
]

ADMIN_STYLESHEET = "gateway/admin.css"
NETWORKS_HELP = "Comma-separated CIDRs, e.g. 10.0.0.0/8."


class StringListField(forms.CharField):
    """A JSON list of strings edited as text, one item per line or separated by commas."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        text = super().to_python(value)
        return [item.strip() for item in re.split(r"[,\n]", text) if item.strip()]


class NetworkListField(StringListField):
    """A JSON list of CIDR networks (IP allow and deny lists), edited as text."""

    def __init__(self, *, help_text: str = "", **kwargs) -> None:
        super().__init__(help_text=help_text or NETWORKS_HELP, **kwargs)


class JSONObjectField(forms.JSONField):
    """A JSON object edited as text: an empty box means {} and nothing ever shows as `null`."""

    def to_python(self, value):
        return super().to_python(value) if value not in (None, "") else {}

    def prepare_value(self, value):
        return super().prepare_value({} if value is None else value)


class ChoiceListField(forms.TypedMultipleChoiceField):
    """A JSON list of values from a fixed set, edited as checkboxes."""

    widget = forms.CheckboxSelectMultiple


class ListFieldsMixin:
    """Edit the named JSON list fields with friendlier form fields than raw JSON."""

    list_fields: dict[str, Callable[..., forms.Field]] = {}

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        factory = self.list_fields.get(db_field.name)
        if factory is None:
            return super().formfield_for_dbfield(db_field, request, **kwargs)
        options = {
            "label": capfirst(db_field.verbose_name),
            "help_text": db_field.help_text,
            "required": not db_field.blank,
        }
        if db_field.has_default():
            # An add form starts from the model default (all methods ticked, `{}`), as the API
            # and config files do; a callable default is called for each form.
            options["initial"] = db_field.default
        return factory(**options)


class AdminLayoutMixin:
    """The gateway's admin stylesheet: number inputs wide enough for their values, inline
    tables that fit a 1366 px screen."""

    class Media:
        css = {"all": (ADMIN_STYLESHEET,)}


class ReadOnlyAdminMixin:
    """Records written by the system (health history, deliveries, demo sessions): view only.

    Deleting stays with the usual permission: without it, deleting a target, tenant or rule
    would be refused because its cascade reaches these records.
    """

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
