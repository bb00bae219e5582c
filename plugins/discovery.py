"""Which plugins this process can run: the built-ins, the `gateway.plugins` entry points of
installed packages, and the `GATEWAY_PLUGINS` dotted paths (SPEC section 19).

Each candidate is loaded and checked on its own: one that fails to import or breaks the
interface is refused with a message naming it (logged, and shown in the admin and when
staff try to configure it), and the others still load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from plugins.constants import BUILTIN_PLUGINS, ENTRY_POINT_GROUP, HOOKS, MAX_TIMEOUT_MS
from plugins.interface import Plugin

__all__ = ["Catalogue", "PluginLoadError", "catalogue", "reload_catalogue"]

logger = logging.getLogger("gateway.plugins")

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class PluginLoadError(Exception):
    """A candidate that cannot be used; the message says why, for staff."""


@dataclass(frozen=True)
class Catalogue:
    """Plugins by name, and the candidates refused at load with the reason."""

    plugins: dict[str, type[Plugin]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> type[Plugin] | None:
        return self.plugins.get(name)

    def describe_unknown(self, name: str) -> str:
        """Why `name` cannot be configured: refused at load, or not installed at all."""
        for source, message in self.failures.items():
            if source.startswith(f"{name} ") or f"'{name}'" in message:
                return f"The plugin {name!r} failed to load: {message}"
        known = ", ".join(sorted(self.plugins)) or "none"
        return f"No plugin named {name!r} is installed (available: {known})."


@cache
def catalogue() -> Catalogue:
    """Loaded once per process; `reload_catalogue()` after installing a package."""
    return _load()


def reload_catalogue() -> Catalogue:
    catalogue.cache_clear()
    importlib.invalidate_caches()
    return catalogue()


def _candidates() -> list[tuple[str, object]]:
    """(source, loader) pairs: built-ins first, then entry points, then the setting."""
    found: list[tuple[str, object]] = [(f"built-in {path}", _importer(path)) for path in BUILTIN_PLUGINS]
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.append((f"{entry_point.name} (entry point {entry_point.value})", entry_point.load))
    for path in settings.GATEWAY_PLUGINS:
        found.append((f"{path} (GATEWAY_PLUGINS)", _importer(path)))
    return found


def _importer(path: str):
    return lambda: import_string(path)


def _load() -> Catalogue:
    plugins: dict[str, type[Plugin]] = {}
    failures: dict[str, str] = {}
    for source, load in _candidates():
        try:
            candidate = _checked(load())
            if candidate.name in plugins and plugins[candidate.name] is not candidate:
                raise PluginLoadError(f"the name {candidate.name!r} is taken by another plugin")
        except Exception as exc:  # a broken package must not stop the others
            message = str(exc) if isinstance(exc, PluginLoadError) else f"{type(exc).__name__}: {exc}"
            failures[source] = message
            logger.error("plugin %s refused at load: %s", source, message, extra={"plugin": source})
            continue
        plugins[candidate.name] = candidate
    return Catalogue(plugins, failures)


def _checked(candidate) -> type[Plugin]:
    """The class itself if it keeps the interface; PluginLoadError saying what is wrong."""
    if not isinstance(candidate, type):
        raise PluginLoadError(f"{candidate!r} is not a class")
    name = getattr(candidate, "name", "")
    if not isinstance(name, str) or not _NAME.match(name):
        raise PluginLoadError(f"{candidate.__qualname__}.name must be lowercase letters, digits and '-'")
    if not isinstance(getattr(candidate, "version", None), str):
        raise PluginLoadError(f"plugin {name!r}: version must be a string")
    for attribute in ("priority", "timeout_ms"):
        value = getattr(candidate, attribute, None)
        if not isinstance(value, int) or isinstance(value, bool):
            raise PluginLoadError(f"plugin {name!r}: {attribute} must be an integer")
    if not 0 < candidate.timeout_ms <= MAX_TIMEOUT_MS:
        raise PluginLoadError(f"plugin {name!r}: timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")
    if not any(callable(getattr(candidate, hook, None)) for hook in HOOKS):
        raise PluginLoadError(f"plugin {name!r} defines none of the hooks {', '.join(HOOKS)}")
    _check_schema(name, getattr(candidate, "config_schema", None))
    return candidate


def _check_schema(name: str, schema) -> None:
    if not isinstance(schema, dict):
        raise PluginLoadError(f"plugin {name!r}: config_schema must be a JSON Schema object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        message = f"plugin {name!r}: config_schema is not a valid JSON Schema: {exc.message}"
        raise PluginLoadError(message) from exc
