"""Serializers that validate through the model (`full_clean()`), so every app's management API
refuses exactly what the admin refuses.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from rest_framework import serializers
from rest_framework.settings import api_settings

__all__ = ["FullCleanModelSerializer", "SlugKeyField", "clean_model_instance"]


def clean_model_instance(instance: models.Model, attrs: dict, exclude: Iterable[str] = ()) -> dict:
    """Apply `attrs` to `instance`, run `full_clean()`, return attrs as the model normalised them.

    Django's ValidationError becomes DRF's, keyed by field (non-field errors under
    NON_FIELD_ERRORS_KEY), so the problem body's `errors` names each field.
    """
    field_names = {f.name for f in instance._meta.concrete_fields if not f.primary_key}
    for name, value in attrs.items():
        if name in field_names:
            setattr(instance, name, value)
    skipped = {f.name for f in instance._meta.concrete_fields if not f.editable}
    try:
        instance.full_clean(exclude=sorted(skipped | set(exclude)))
    except DjangoValidationError as exc:
        detail = serializers.as_serializer_error(exc)
        if NON_FIELD_ERRORS in detail:
            detail[api_settings.NON_FIELD_ERRORS_KEY] = detail.pop(NON_FIELD_ERRORS)
        raise serializers.ValidationError(detail) from exc
    return {name: getattr(instance, name) if name in field_names else value for name, value in attrs.items()}


class SlugKeyField(serializers.SlugRelatedField):
    """A related object named by its slug; a value no slug can hold is refused before the query.

    PostgreSQL refuses text holding NUL with an error, which DRF's own field lets through as a 500.
    """

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)


class FullCleanModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer that validates through the model (`full_clean()`) on a scratch copy."""

    #: Model fields `full_clean()` must skip (relations the serializer saves itself).
    clean_exclude: tuple[str, ...] = ()

    def build_standard_field(self, field_name, model_field):
        """The model default becomes the field's `initial`, so the browsable API's HTML form starts
        where a JSON body that leaves the field out ends: a form posts an unticked box as false,
        and `auth_required` or `enabled` must not turn off just because the box started empty.
        """
        field_class, kwargs = super().build_standard_field(field_name, model_field)
        if model_field.has_default() and not kwargs.get("read_only"):
            kwargs.setdefault("initial", model_field.default)
        return field_class, kwargs

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        model = self.Meta.model
        scratch = copy.copy(self.instance) if self.instance is not None else model()
        return clean_model_instance(scratch, attrs, self.clean_exclude)
