"""Config checks at save (admin, API, config file): the plugin exists and loaded, and the
config matches its JSON Schema, each error naming the JSON pointer of the bad value."""

from __future__ import annotations

import math

from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator

from plugins.discovery import catalogue
from plugins.interface import Plugin

__all__ = ["config_errors", "plugin_class"]

MAX_ERRORS = 20


def plugin_class(name: str) -> type[Plugin]:
    plugins = catalogue()
    plugin = plugins.get(name)
    if plugin is None:
        raise ValidationError(plugins.describe_unknown(name))
    return plugin


def config_errors(plugin: type[Plugin], config) -> list[str]:
    """Messages such as "/status_code: 42 is less than the minimum of 100" (empty: valid)."""
    if not isinstance(config, dict):
        return ["/: must be a JSON object"]
    unstorable = _unstorable(config, ())
    if unstorable:
        return unstorable
    validator = Draft202012Validator(plugin.config_schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    return [f"{_pointer(error.absolute_path)}: {error.message}" for error in errors[:MAX_ERRORS]]


def _unstorable(value, path: tuple) -> list[str]:
    """What no JSON column stores (PostgreSQL refuses NUL in text, NaN, and a lone surrogate
    cannot be encoded at all): each was found as a 500."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{_pointer(path)}: must be a finite number"]
    if isinstance(value, str) and _bad_text(value):
        return [f"{_pointer(path)}: {_bad_text(value)}"]
    if isinstance(value, dict):
        for key, item in value.items():
            if _bad_text(key):
                return [f"{_pointer(path)}: member names {_bad_text(key)}"]
            found = _unstorable(item, (*path, key))
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable(item, (*path, index))
            if found:
                return found
    return []


def _bad_text(text: str) -> str:
    """Why a string cannot be stored, or "" when it can."""
    if "\x00" in text:
        return "must not contain a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain surrogate characters"
    return ""


def _pointer(path) -> str:
    """RFC 6901: "/" for the document, "~" and "/" escaped in member names."""
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in path]
    return "/" + "/".join(parts)
