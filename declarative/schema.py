"""The JSON Schema of the file, derived from the kinds (so it cannot drift from the models).

It checks shape: known keys, types, enumerations, required fields. The model validators run
after it and judge values (ranges, URLs, prefixes), exactly as in the admin and the API.
"""

from __future__ import annotations

from functools import lru_cache

from django.db import models
from django.db.models.fields import PositiveIntegerRelDbTypeMixin
from jsonschema import Draft202012Validator

from declarative.constants import FORMAT_VERSION, FORMAT_VERSION_KEY, SECRET_REFERENCE_PATTERN
from declarative.document import ConfigFileError, FileProblem, format_path
from declarative.kinds import KINDS, TOP_LEVEL, Kind

__all__ = ["config_schema", "validate_shape"]

SCHEMA_ID = "/api/manage/config/schema"
_OPTIONAL_SECRET = f"{SECRET_REFERENCE_PATTERN[:-1]}|^$"


def _field_schema(kind: Kind, model_field: models.Field) -> dict:
    if model_field.name in kind.secrets:
        return {"type": "string", "pattern": _OPTIONAL_SECRET, "description": "${ENV_NAME} or empty."}
    if model_field.name in kind.references:
        schema = {"type": "string", "description": f"A {kind.references[model_field.name].kind} key."}
    elif model_field.choices:
        values = [value for value, _ in model_field.choices]
        schema = {"type": "string", "enum": [*values, ""] if model_field.blank else values}
    else:
        schema = _type_schema(model_field)
    if model_field.help_text:
        schema["description"] = str(model_field.help_text)
    return {"anyOf": [schema, {"type": "null"}]} if model_field.null else schema


def _type_schema(model_field: models.Field) -> dict:
    if isinstance(model_field, models.BooleanField):
        return {"type": "boolean"}
    if isinstance(model_field, models.IntegerField):
        positive = isinstance(model_field, PositiveIntegerRelDbTypeMixin)
        return {"type": "integer", "minimum": 0} if positive else {"type": "integer"}
    if isinstance(model_field, models.FloatField | models.DecimalField):
        return {"type": "number"}
    if isinstance(model_field, models.DateTimeField):
        return {"type": "string", "format": "date-time"}
    if isinstance(model_field, models.JSONField):
        default = model_field.get_default()
        return (
            {"type": "object"}
            if isinstance(default, dict)
            else {"type": "array", "items": {"type": "string"}}
        )
    schema = {"type": "string"}
    if model_field.max_length:
        schema["maxLength"] = model_field.max_length
    return schema


def _is_required(model_field: models.Field) -> bool:
    """A field without a default must be written; a key field with one (`version: ""`) need not."""
    return not (model_field.has_default() or model_field.blank or model_field.null)


def _kind_schema(kind: Kind) -> dict:
    properties = {f.name: _field_schema(kind, f) for f in kind.fields}
    for name, target in kind.many.items():
        description = f"{target.kind} keys."
        properties[name] = {"type": "array", "items": {"type": "string"}, "description": description}
    for child_name in kind.children:
        child = KINDS[child_name]
        properties[child_name] = _kind_schema(child) if child.single else _list_schema(child)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": sorted(f.name for f in kind.fields if _is_required(f)),
        "properties": properties,
    }


def _list_schema(kind: Kind) -> dict:
    return {"type": "array", "items": _kind_schema(kind)}


@lru_cache(maxsize=1)
def config_schema() -> dict:
    """The schema document published at /api/manage/config/schema."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Gateway configuration file",
        "description": "SPEC section 18: natural keys, no ids, secrets as ${ENV_NAME} references.",
        "type": "object",
        "additionalProperties": False,
        "required": [FORMAT_VERSION_KEY],
        "properties": {
            FORMAT_VERSION_KEY: {"const": FORMAT_VERSION},
            **{name: _list_schema(KINDS[name]) for name in TOP_LEVEL},
        },
    }


def validate_shape(document: dict) -> None:
    """Refuse a document that does not fit the schema, naming each bad value's path."""
    validator = Draft202012Validator(config_schema())
    problems = [
        FileProblem(format_path(error.absolute_path), str(error.validator), error.message)
        for error in validator.iter_errors(document)
    ]
    if problems:
        raise ConfigFileError(problems)
