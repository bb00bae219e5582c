"""A data plane's registry: a config document compiled to the snapshot with no database.

The document is checked as an apply checks it (the JSON Schema, each field's validators, the
model's own `clean()`), held as unsaved model objects wired together in memory (ids given
here, relations filled in), and frozen by the very steps that compile the database
(`proxy.snapshot.assemble_snapshot`), so a file-fed data plane routes exactly as a
database-fed one. Not checked here: rules that compare an object with other stored rows (a
prefix taking over another service's paths), which `gateway_config apply` runs on the
control plane; values that must be unique are checked within the file. Notification rules
are not compiled: alerts run on the control plane.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.query import QuerySet
from django.utils import timezone

from declarative.document import ConfigFileError, FileProblem, format_path
from declarative.kinds import KINDS, Kind
from declarative.schema import validate_shape
from declarative.sync import assign_field, validation_problems
from proxy.snapshot import Snapshot, assemble_snapshot

__all__ = ["compile_document"]

Path = tuple[str | int, ...]
# Kinds the data plane compiles, in dependency order (references point backwards).
COMPILED = ("services", "rate_policies", "plans", "tenants", "identity_providers", "plugins")
# An API key's clean() refuses an expiry in the past, a rule for edits: a key that has
# expired since it was exported is still configuration (the data plane refuses it by date).
_MODEL_CLEAN_SKIPPED = frozenset({"api_keys"})


def compile_document(document: dict, version: int) -> Snapshot:
    """The snapshot the document describes; ConfigFileError (every bad value by its file
    path) or proxy.snapshot.CompileError when it cannot be served."""
    validate_shape(document)
    objects = _InMemoryRegistry(document)
    if objects.problems:
        raise ConfigFileError(objects.problems)
    return assemble_snapshot(
        version,
        services=objects.of("services"),
        tenants=objects.of("tenants"),
        api_keys=objects.of("api_keys"),
        rate_policies=[p for p in objects.of("rate_policies") if p.enabled],
        identity_providers=[p for p in objects.of("identity_providers") if p.enabled],
        plugin_configs=[c for c in objects.of("plugins") if c.enabled],
        document_for=_no_document,
    )


def _no_document(service) -> None:
    """A data plane holds no fetched OpenAPI documents: there, request-validator checks
    nothing and mock answers 503 (as on a control plane before the document is fetched)."""
    return None


class _InMemoryRegistry:
    """Every object of the document, built and validated; `problems` lists what is wrong."""

    def __init__(self, document: dict) -> None:
        self.ids: Iterator[int] = itertools.count(1)
        self.now = timezone.now()
        self.problems: list[FileProblem] = []
        self.built: dict[str, list[models.Model]] = {name: [] for name in KINDS}
        self.by_key: dict[str, dict[str, models.Model]] = {name: {} for name in KINDS}
        self.listed_by: dict[int, list[tuple[str, models.Model]]] = {}  # id(obj) -> (accessor, owner)
        for name in COMPILED:
            for index, entry in enumerate(document.get(name) or []):
                self.build(KINDS[name], entry, (name, index))
        self.cache_reverse_many()

    def of(self, name: str) -> list[models.Model]:
        return self.built[name]

    def build(self, kind: Kind, entry: dict, path: Path, parent: models.Model | None = None):
        instance = kind.model(pk=next(self.ids))
        if kind.parent:
            setattr(instance, kind.parent, parent)
        for model_field in kind.fields:
            self.assign(kind, instance, model_field, entry, (*path, model_field.name))
        for stamp in ("created_at", "updated_at"):  # what an unsaved object lacks (Deprecation dates)
            if hasattr(instance, stamp):
                setattr(instance, stamp, self.now)
        if not self.clean(kind, instance, path):
            return None
        self.remember(kind, instance, path)
        self.build_many(kind, instance, entry, path)
        self.build_children(kind, instance, entry, path)
        return instance

    def build_many(self, kind: Kind, instance, entry: dict, path: Path) -> None:
        """Many-to-many fields by natural key, answered from memory (`plan.rate_policies.all()`)."""
        for name, target in kind.many.items():
            related = []
            for index, value in enumerate(entry.get(name) or []):
                try:
                    related.append(self.lookup(target, value, (*path, name, index)))
                except ConfigFileError as exc:
                    self.problems.extend(exc.problems)
            _cache_related(instance, KINDS[target.kind], name, related)
            reverse = kind.model._meta.get_field(name).remote_field.related_name
            for obj in related:
                self.listed_by.setdefault(id(obj), []).append((reverse, instance))

    def cache_reverse_many(self) -> None:
        """The other side of each many-to-many field (`policy.plans.all()`), for every object
        of the referenced kinds, listed or not."""
        for kind in (KINDS[name] for name in COMPILED):
            for name, target in kind.many.items():
                reverse = kind.model._meta.get_field(name).remote_field.related_name
                for obj in self.built[target.kind]:
                    owners = [o for r, o in self.listed_by.get(id(obj), []) if r == reverse]
                    _cache_related(obj, kind, reverse, owners)

    def assign(self, kind: Kind, instance, model_field: models.Field, entry: dict, where: Path) -> None:
        try:
            assign_field(kind, instance, model_field, entry, where, self.reference)
        except ConfigFileError as exc:  # every bad value is reported, not only the first
            self.problems.extend(exc.problems)

    def reference(self, kind: Kind, model_field: models.Field, value, where: Path):
        """The object a reference names, from the file: the file is the whole registry here."""
        if value is None:
            return None
        return self.lookup(kind.references[model_field.name], value, where)

    def lookup(self, target, value, where: Path):
        found = self.by_key[target.kind].get(str(value))
        if found is None:
            raise ConfigFileError.single(
                format_path(where), "unknown_reference", f"No {target.kind}/{value} in the file."
            )
        return found

    def clean(self, kind: Kind, instance, path: Path) -> bool:
        """The admin's validation minus the comparisons with stored rows; False when refused."""
        skipped = [
            f.name
            for f in instance._meta.concrete_fields
            # Relations were resolved in the file above (validating them would query).
            if (not f.editable and f.name not in kind.include) or f.is_relation
        ]
        if kind.name == "services":
            instance.shadowed_services = lambda: []  # compares stored rows; see the module docstring
        try:
            instance.clean_fields(exclude=skipped)
            if kind.name not in _MODEL_CLEAN_SKIPPED:
                instance.clean()
        except ValidationError as exc:
            self.problems.extend(validation_problems(kind, exc, path))
            return False
        return True

    def remember(self, kind: Kind, instance, path: Path) -> None:
        """Index the object by its natural key; a unique value used twice is a problem."""
        for model_field in kind.fields:
            if model_field.unique and model_field.name not in kind.references:
                self.refuse_duplicate(kind, instance, model_field.name, path)
        if kind.key and not kind.parent:
            self.by_key[kind.name][str(getattr(instance, kind.key[0]))] = instance
        self.built[kind.name].append(instance)

    def refuse_duplicate(self, kind: Kind, instance, name: str, path: Path) -> None:
        value = getattr(instance, name)
        if any(getattr(other, name) == value for other in self.built[kind.name]):
            self.problems.append(
                FileProblem(
                    format_path((*path, name)), "duplicate", f"{kind.name}: {name} {value!r} appears twice."
                )
            )

    def build_children(self, kind: Kind, instance, entry: dict, path: Path) -> None:
        """Nested objects, and the relations the snapshot steps read filled in (no query)."""
        for child_name in kind.children:
            child = KINDS[child_name]
            if child.single:
                related = (
                    self.build(child, entry[child_name], (*path, child_name), instance)
                    if entry.get(child_name) is not None
                    else None
                )
                _cache_one_to_one(instance, child_name, related)
                continue
            built = [
                self.build(child, child_entry, (*path, child_name, index), instance)
                for index, child_entry in enumerate(entry.get(child_name) or [])
            ]
            _cache_related(instance, child, child_name, [obj for obj in built if obj is not None])


def _cache_related(instance: models.Model, child: Kind, name: str, objects: list[models.Model]) -> None:
    """`instance.<name>.all()` answers `objects` without a query, as after prefetch_related()."""
    queryset = QuerySet(model=child.model)
    queryset._result_cache = objects
    queryset._prefetch_done = True
    if not hasattr(instance, "_prefetched_objects_cache"):
        instance._prefetched_objects_cache = {}
    instance._prefetched_objects_cache[name] = queryset


def _cache_one_to_one(instance: models.Model, name: str, related: models.Model | None) -> None:
    """`instance.<name>` is `related`, or raises DoesNotExist, without a query."""
    descriptor = getattr(type(instance), name)
    descriptor.related.set_cached_value(instance, related)
