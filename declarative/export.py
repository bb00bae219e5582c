"""The registry as a file: natural keys, no ids, sorted, secrets as `${ENV_NAME}` references."""

from __future__ import annotations

import copy
import datetime as dt

from django.db import models

from declarative.constants import FORMAT_VERSION, FORMAT_VERSION_KEY
from declarative.document import secret_reference
from declarative.kinds import KINDS, TOP_LEVEL, Kind

__all__ = ["canonical", "entry_of", "export_document", "file_value", "many_keys", "sort_key"]


def export_document(include_key_hashes: bool = False) -> dict:
    """Every kind of the registry, each list sorted by natural key, every field written out."""
    document: dict = {FORMAT_VERSION_KEY: FORMAT_VERSION}
    for name in TOP_LEVEL:
        kind = KINDS[name]
        objects = kind.model.objects.all()
        document[name] = _sorted(kind, [entry_of(kind, obj, include_key_hashes) for obj in objects])
    return document


def entry_of(kind: Kind, instance: models.Model, include_key_hashes: bool = False) -> dict:
    """One object as the file writes it, with its nested kinds."""
    entry = {f.name: file_value(kind, instance, f) for f in kind.fields}
    for name, target in kind.many.items():
        entry[name] = many_keys(instance, name, target)
    for child_name in kind.children:
        if child_name in kind.optional_children and not include_key_hashes:
            continue
        child = KINDS[child_name]
        # Each nested kind's name is the related_name of its parent foreign key.
        if child.single:
            related = getattr(instance, child_name, None)
            if related is not None:
                entry[child_name] = entry_of(child, related)
        else:
            related = getattr(instance, child_name).all()
            entry[child_name] = _sorted(child, [entry_of(child, obj) for obj in related])
    return entry


def many_keys(instance: models.Model, name: str, target) -> list[str]:
    """A many-to-many field as the file writes it: the related objects' natural keys, sorted."""
    return sorted(str(getattr(related, target.key_field)) for related in getattr(instance, name).all())


def file_value(kind: Kind, instance: models.Model, model_field: models.Field):
    """A field's value as written: a reference by natural key, a secret by name, a date as text."""
    if model_field.name in kind.references:
        related = getattr(instance, model_field.name)
        return None if related is None else getattr(related, kind.references[model_field.name].key_field)
    value = model_field.value_from_object(instance)
    if model_field.name in kind.secrets:
        owner = [str(getattr(instance, name)) for name in kind.key]
        return secret_reference(kind.name, *owner, model_field.name) if value else ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return canonical(value)


def canonical(value):
    """Lists of plain values (methods, roles, networks) are sets in meaning: written sorted."""
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        return sorted(value)
    return copy.deepcopy(value)


def sort_key(kind: Kind, entry: dict) -> tuple[str, ...]:
    return tuple(str(entry.get(name) or "") for name in kind.key)


def _sorted(kind: Kind, entries: list[dict]) -> list[dict]:
    return sorted(entries, key=lambda entry: sort_key(kind, entry))
