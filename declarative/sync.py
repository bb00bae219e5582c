"""Apply a file to the registry: one transaction, the models' own validators, one version bump.

Every entry goes through `full_clean()` like an admin or API save, and is saved only when a
field really changes, so applying the same file twice changes nothing. A diff is an apply
rolled back: it cannot disagree with what an apply would do. The saves fire the usual
signals (audit trail, config version); the version's per-save bumps are folded into one.
Nothing is deleted without `prune`, and tenants with what hangs off them (subscription, API
keys) only with `prune_tenants`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, transaction
from django.db.models import ProtectedError, Q
from django.http import HttpRequest

from declarative.constants import AUDIT_SOURCE
from declarative.document import ConfigFileError, FileProblem, format_path, resolve_secret
from declarative.export import canonical, file_value, many_keys, sort_key
from declarative.kinds import KINDS, TOP_LEVEL, Kind, Reference
from declarative.schema import validate_shape
from registry.config_version import fold_versions_since
from registry.models import ConfigState
from tenancy.audit.trail import audit_context

__all__ = ["Change", "ChangeReport", "apply_document", "assign_field", "validation_problems"]

CREATED, UPDATED, DELETED = "created", "updated", "deleted"
SECRET_CHANGED = "(new value)"
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Change:
    """One object created, updated (with its changed fields, before and after) or deleted."""

    action: str
    kind: str
    key: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.key}"


@dataclass
class ChangeReport:
    changes: list[Change] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        """The API's answer: `{"created": [...], "updated": [...], "deleted": [...]}`."""
        return {
            action: [c.label for c in self.changes if c.action == action]
            for action in (CREATED, UPDATED, DELETED)
        }


def apply_document(
    document: dict,
    *,
    prune: bool = False,
    prune_tenants: bool = False,
    dry_run: bool = False,
    request: HttpRequest | None = None,
) -> ChangeReport:
    """Make the registry what the document says; raise ConfigFileError having changed nothing."""
    validate_shape(document)
    with transaction.atomic():
        version = _lock_config_version()
        with audit_context(AUDIT_SOURCE, request=request):
            report = _Applier(document, prune=prune, prune_tenants=prune_tenants).run()
        if dry_run:
            transaction.set_rollback(True)
        elif report.changes:
            # Each save bumped the version; instances must see one change, not one per row.
            fold_versions_since(version)
    return report


def _lock_config_version() -> int:
    """The version before the apply; the row lock keeps concurrent saves out until commit."""
    state = ConfigState.objects.select_for_update().order_by("pk").first()
    return state.version if state is not None else 0


class _Applier:
    """One apply: upserts in dependency order, then (when asked) prunes in reverse."""

    def __init__(self, document: dict, *, prune: bool, prune_tenants: bool):
        self.document = document
        self.prune, self.prune_tenants = prune, prune_tenants
        self.report = ChangeReport()
        self.kept: dict[str, set[int]] = {name: set() for name in KINDS}
        self.listed = {
            name: {sort_key(KINDS[name], entry) for entry in document.get(name, [])} for name in TOP_LEVEL
        }

    def run(self) -> ChangeReport:
        for name in TOP_LEVEL:
            for index, entry in enumerate(self.document.get(name, [])):
                self.upsert(KINDS[name], entry, (name, index))
        for name in reversed(TOP_LEVEL):
            if self.prunes(KINDS[name]):
                self.prune_top_level(KINDS[name])
        return self.report

    def prunes(self, kind: Kind) -> bool:
        return self.prune_tenants if kind.tenant_data else self.prune

    # --- upserts ---------------------------------------------------------------------------

    def upsert(self, kind: Kind, entry: dict, path: Path, parent: models.Model | None = None) -> None:
        instance = self.find(kind, entry, path, parent)
        adding = instance._state.adding
        before = None if adding else self.values(kind, instance)
        shown_before = None if adding else self.shown(kind, instance)
        many_before = {name: [] if adding else many_keys(instance, name, t) for name, t in kind.many.items()}
        self.assign(kind, instance, entry, path)
        many_after = self.many_objects(kind, entry, path)
        self.clean(kind, instance, path)
        key = self.key_of(kind, instance, parent)
        if instance.pk in self.kept[kind.name]:
            raise ConfigFileError.single(format_path(path), "duplicate", f"{kind.name}/{key} appears twice.")
        changed = (
            []
            if adding
            else [name for name, value in self.values(kind, instance).items() if before[name] != value]
        )
        fields = {name: self.shown_change(kind, name, shown_before, instance) for name in changed}
        for name, target in kind.many.items():
            wanted = sorted(str(getattr(obj, target.key_field)) for obj in many_after[name])
            if wanted != many_before[name]:
                fields[name] = (many_before[name], wanted)
        if adding or fields:
            if adding or changed:
                instance.save()
            for name in kind.many:
                if name in fields:
                    getattr(instance, name).set(many_after[name])
            shown = {} if adding else fields
            self.report.changes.append(Change(CREATED if adding else UPDATED, kind.name, key, shown))
        self.kept[kind.name].add(instance.pk)
        self.upsert_children(kind, instance, entry, path)

    def many_objects(self, kind: Kind, entry: dict, path: Path) -> dict[str, list[models.Model]]:
        """Each many-to-many field's objects, named in the file by their natural keys."""
        return {
            name: [
                self.lookup(target, value, (*path, name, index))
                for index, value in enumerate(entry.get(name) or [])
            ]
            for name, target in kind.many.items()
        }

    def upsert_children(self, kind: Kind, instance: models.Model, entry: dict, path: Path) -> None:
        """A nested list left out of the entry leaves those objects alone."""
        for child_name in kind.children:
            if child_name not in entry:
                continue
            child = KINDS[child_name]
            if child.single:
                self.upsert(child, entry[child_name], (*path, child_name), instance)
                continue
            for index, child_entry in enumerate(entry[child_name]):
                self.upsert(child, child_entry, (*path, child_name, index), instance)
            if self.prunes(child):
                stale = getattr(instance, child_name).exclude(pk__in=self.kept[child_name])
                self.delete_all(child, stale, instance)

    def find(self, kind: Kind, entry: dict, path: Path, parent: models.Model | None) -> models.Model:
        """The stored object with the entry's natural key, or a new one."""
        lookup = {kind.parent: parent} if kind.parent else {}
        for name in kind.key:
            model_field = kind.model._meta.get_field(name)
            value = entry.get(name, model_field.get_default())
            if name in kind.references:
                value = self.reference(kind, model_field, value, (*path, name))
            lookup[name] = value
        found = kind.model.objects.filter(**lookup).first()
        return found if found is not None else kind.model(**({kind.parent: parent} if kind.parent else {}))

    def assign(self, kind: Kind, instance: models.Model, entry: dict, path: Path) -> None:
        """Set every field the file carries; a field left out takes the model's default."""
        for model_field in kind.fields:
            assign_field(kind, instance, model_field, entry, (*path, model_field.name), self.reference)

    def reference(self, kind: Kind, model_field: models.Field, value, path: Path) -> models.Model | None:
        """The object a reference names, from the file (already applied) or the database."""
        if value is None:
            return None
        return self.lookup(kind.references[model_field.name], value, path)

    def lookup(self, target: Reference, value, path: Path) -> models.Model:
        """The object of `target.kind` whose natural key is `value`."""
        if self.prunes(KINDS[target.kind]) and (str(value),) not in self.listed[target.kind]:
            raise ConfigFileError.single(
                format_path(path), "unknown_reference",
                f"{target.kind}/{value} is not in the file, and pruning would delete it.",
            )  # fmt: skip
        found = KINDS[target.kind].model.objects.filter(**{target.key_field: value}).first()
        if found is None:
            raise ConfigFileError.single(
                format_path(path),
                "unknown_reference",
                f"No {target.kind}/{value} in the file or the registry.",
            )
        return found

    def clean(self, kind: Kind, instance: models.Model, path: Path) -> None:
        """The admin's and the API's validation (`full_clean()`), each error named by its file path."""
        # As the admin does, minus the fields the file sets itself (an API key's hash: unique).
        skipped = [
            f.name for f in instance._meta.concrete_fields if not f.editable and f.name not in kind.include
        ]
        try:
            instance.full_clean(exclude=skipped)
        except ValidationError as exc:
            raise ConfigFileError(validation_problems(kind, exc, path)) from exc

    # --- prunes ----------------------------------------------------------------------------

    def prune_top_level(self, kind: Kind) -> None:
        stale = kind.model.objects.exclude(pk__in=self.kept[kind.name])
        listed_tenants = [key[0] for key in self.listed["tenants"]]
        if kind.name == "notification_rules" and not self.prune_tenants:
            # A rule of a tenant the file does not describe belongs to that tenant, not to the file.
            stale = stale.filter(tenant__slug__in=listed_tenants)
        if kind.name == "plugins" and not self.prune_tenants:  # the same for a tenant's plugins
            stale = stale.filter(Q(tenant=None) | Q(tenant__slug__in=listed_tenants))
        self.delete_all(kind, stale, None)

    def delete_all(self, kind: Kind, stale: models.QuerySet, parent: models.Model | None) -> None:
        for instance in stale:
            key = self.key_of(kind, instance, parent)
            try:
                instance.delete()
            except ProtectedError as exc:
                blockers = ", ".join(sorted({str(obj) for obj in exc.protected_objects}))
                raise ConfigFileError.single(
                    kind.name,
                    "protected",
                    f"{kind.name}/{key} cannot be deleted while {blockers} refer to it.",
                ) from exc
            self.report.changes.append(Change(DELETED, kind.name, key))

    # --- values ----------------------------------------------------------------------------

    @staticmethod
    def values(kind: Kind, instance: models.Model) -> dict:
        """What is compared to decide whether to save: the stored values (a list's order aside)."""
        return {f.name: canonical(f.value_from_object(instance)) for f in kind.fields}

    @staticmethod
    def shown(kind: Kind, instance: models.Model) -> dict:
        """What a diff shows: the values as the file writes them (secrets by name only)."""
        return {f.name: file_value(kind, instance, f) for f in kind.fields}

    def shown_change(self, kind: Kind, name: str, before: dict, instance: models.Model) -> tuple:
        after = file_value(kind, instance, instance._meta.get_field(name))
        return (before[name], f"{after} {SECRET_CHANGED}" if name in kind.secrets else after)

    def key_of(self, kind: Kind, instance: models.Model, parent: models.Model | None) -> str:
        """`sales`, `sales/http://10.0.0.5:8080`: the parent's key, then the object's own."""
        parts = []
        if kind.parent:
            owner = parent if parent is not None else getattr(instance, kind.parent)
            parts.append(str(getattr(owner, "slug", None) or owner.name))  # a service's slug, a plan's name
        for name in kind.key:
            value = file_value(kind, instance, instance._meta.get_field(name))
            if value not in ("", None):
                parts.append(str(value))
        return "/".join(parts)


def assign_field(
    kind: Kind, instance: models.Model, model_field, entry: dict, where: Path, reference
) -> None:
    """One field from its entry (or the model's default): a reference through `reference(kind,
    field, value, where)`, a secret from its `${ENV}` name, anything else as written."""
    value = entry[model_field.name] if model_field.name in entry else model_field.get_default()
    if model_field.name in kind.references:
        setattr(instance, model_field.name, reference(kind, model_field, value, where))
    elif model_field.name in kind.secrets:
        setattr(instance, model_field.attname, resolve_secret(value, format_path(where)))
    else:
        setattr(instance, model_field.attname, value)


def validation_problems(kind: Kind, exc: ValidationError, path: Path) -> list[FileProblem]:
    """A model's ValidationError as file problems: a field's error at the field's path."""
    carried = {f.name for f in kind.fields}
    errors = exc.error_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.error_list}
    problems = []
    for name, error_list in errors.items():
        where = format_path((*path, name) if name in carried else path)
        for error in error_list:
            problems.extend(
                FileProblem(where, error.code or "invalid", message) for message in error.messages
            )
    return problems
