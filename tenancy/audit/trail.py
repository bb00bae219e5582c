"""The audit trail (SPEC section 15): who changed what, when, from where, before and after.

`tenancy/audit/middleware.py` says who is acting and from where; the receivers in
`tenancy/audit/signals.py` call `capture_before` / `record_save` / `record_delete`. An event
is written in the transaction of the change it describes (inside a savepoint), and a
failure to write it is logged as an error, never raised into the save: an operator's admin
change must not fail because of an audit bug. Secrets are never written: a secret field's
value is compared through a fingerprint and recorded as "<redacted>".
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import models, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from tenancy.models import AuditEvent, Tenant, User

__all__ = [
    "ANONYMOUS_ACTOR",
    "AUDITED_MODELS",
    "AUDITED_MODEL_LABELS",
    "REDACTED",
    "SYSTEM_ACTOR",
    "AuditAction",
    "AuditSource",
    "AuditedModel",
    "audit_context",
    "audited_model_classes",
    "capture_before",
    "event_record",
    "export_response",
    "export_tenant_audit",
    "record_delete",
    "record_save",
    "source_for_path",
]

logger = logging.getLogger("gateway.audit")

REDACTED = "<redacted>"
SYSTEM_ACTOR = "system"
ANONYMOUS_ACTOR = "anonymous"
ADMIN_PATH_PREFIX = "/admin/"
EXPORT_CONTENT_TYPE = "application/json"
# The event has its own timestamp; these move on every save and would make every save a change.
BOOKKEEPING_FIELDS = frozenset({"created_at", "updated_at"})
# Defence in depth: a field added later with one of these in its name is redacted too.
SECRET_NAME = re.compile(r"secret|password|passwd|hash|token|private", re.IGNORECASE)
SELF = "self"
_BEFORE_ATTR = "_audit_before"
_MISSING = object()
_ACTOR_REPR_LENGTH = AuditEvent._meta.get_field("actor_repr").max_length
_OBJECT_REPR_LENGTH = AuditEvent._meta.get_field("object_repr").max_length


class AuditSource(models.TextChoices):
    ADMIN = "admin", "Admin"
    API = "api", "API"
    SYSTEM = "system", "System"


class AuditAction(models.TextChoices):
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"


@dataclass(frozen=True, slots=True)
class AuditedModel:
    """How one model is audited: where its tenant is, which fields are secret or noise."""

    label: str
    tenant: str | None = "tenant"  # attribute holding the tenant; SELF for Tenant; None: global
    secret_fields: frozenset[str] = field(default_factory=frozenset)
    ignored_fields: frozenset[str] = field(default_factory=frozenset)

    def is_secret(self, name: str) -> bool:
        return name in self.secret_fields or bool(SECRET_NAME.search(name))


AUDITED_MODELS = (
    AuditedModel("registry.Service", tenant=None),
    # Health state is written by the health sweep, not by anyone managing the gateway.
    AuditedModel("registry.Target", tenant=None, ignored_fields=frozenset({"healthy", "last_checked_at"})),
    AuditedModel("registry.ServiceVersion", tenant=None),
    AuditedModel("registry.RatePolicy", tenant=None),
    AuditedModel(
        "registry.ApiKey",
        secret_fields=frozenset({"key_hash"}),
        ignored_fields=frozenset({"last_used_at"}),
    ),
    AuditedModel("tenancy.Tenant", tenant=SELF),
    AuditedModel("tenancy.Subscription"),
    AuditedModel(
        "tenancy.User",
        secret_fields=frozenset({"password"}),
        ignored_fields=frozenset({"last_login"}),
    ),
    AuditedModel("tenancy.IdentityProvider", tenant=None, secret_fields=frozenset({"client_secret"})),
    AuditedModel("alerts.NotificationRule"),
    AuditedModel("plugins.PluginConfig"),  # named by label: tenancy does not import plugins
)
AUDITED_MODEL_LABELS = tuple(spec.label.lower() for spec in AUDITED_MODELS)
_SPECS = {spec.label.lower(): spec for spec in AUDITED_MODELS}


def audited_model_classes() -> list[type[models.Model]]:
    """The model classes of AUDITED_MODELS (call once the app registry is ready)."""
    return [apps.get_model(spec.label) for spec in AUDITED_MODELS]


def _spec_of(instance: models.Model) -> AuditedModel | None:
    return _SPECS.get(instance._meta.label_lower)


# --- Who is acting: set per request by the middleware, or explicitly ----------------------


@dataclass(frozen=True, slots=True)
class _AuditContext:
    source: str
    request: HttpRequest | None = None
    actor: object | None = None


_context: ContextVar[_AuditContext | None] = ContextVar("audit_context", default=None)


@contextmanager
def audit_context(
    source: str, *, request: HttpRequest | None = None, actor: object | None = None
) -> Iterator[None]:
    """Attribute the changes made inside the block to a request (or an explicit actor).

    The request, not its user, is kept: DRF authenticates tokens inside the view and then
    sets `request.user` on the Django request, after the middleware ran.
    """
    token = _context.set(_AuditContext(source, request, actor))
    try:
        yield
    finally:
        _context.reset(token)


def source_for_path(path: str) -> str:
    """`admin` for the Django admin; every other Django-served path is the API."""
    return AuditSource.ADMIN if path.startswith(ADMIN_PATH_PREFIX) else AuditSource.API


def _current_actor(context: _AuditContext | None) -> tuple[User | None, str]:
    if context is None:
        return None, SYSTEM_ACTOR
    user = getattr(context.request, "user", None) if context.request else context.actor
    if user is None or not getattr(user, "is_authenticated", False):
        return None, ANONYMOUS_ACTOR if context.request is not None else SYSTEM_ACTOR
    if isinstance(user, User) and user.pk is not None:
        return user, user.get_username()[:_ACTOR_REPR_LENGTH]
    return None, str(user)[:_ACTOR_REPR_LENGTH]  # e.g. an API-key principal


# --- Field values ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fingerprint:
    """Stands for a secret while comparing; not JSON-serializable, so it can never be written."""

    digest: str


def _jsonable(value):
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID | timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "<binary>"
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    return str(value)


def _comparable(spec: AuditedModel, model_field: models.Field, value):
    """The field's value as it is recorded (JSON-ready), or a fingerprint for a secret."""
    if value is not None:
        with suppress(ValidationError, TypeError, ValueError):
            value = model_field.to_python(value)
    value = _jsonable(value)
    if spec.is_secret(model_field.name) and value not in (None, ""):
        return _Fingerprint(hashlib.sha256(repr(value).encode()).hexdigest())
    return value


def _audited_fields(
    spec: AuditedModel, instance: models.Model, update_fields: Iterable[str] | None = None
) -> list[models.Field]:
    skipped = BOOKKEEPING_FIELDS | spec.ignored_fields
    fields = [f for f in instance._meta.concrete_fields if not f.primary_key and f.name not in skipped]
    if update_fields is not None:
        wanted = set(update_fields)
        fields = [f for f in fields if f.name in wanted or f.attname in wanted]
    return fields


def _values(spec: AuditedModel, fields: list[models.Field], read) -> dict:
    return {f.name: _comparable(spec, f, read(f.attname)) for f in fields}


def _present(instance: models.Model, name: str, value):
    """A recorded value: secrets redacted, a foreign key as its id and its text."""
    if isinstance(value, _Fingerprint):
        return REDACTED
    model_field = instance._meta.get_field(name)
    if not model_field.is_relation or value is None:
        return value
    return {"id": value, "repr": _related_repr(instance, model_field, value)}


def _related_repr(instance: models.Model, model_field: models.Field, pk) -> str | None:
    if getattr(instance, model_field.attname) == pk:  # the instance's own (usually cached) object
        try:
            related = getattr(instance, model_field.name)
        except ObjectDoesNotExist:
            related = None
    else:
        related = model_field.related_model._base_manager.filter(pk=pk).first()
    return str(related) if related is not None else None


# --- Recording -------------------------------------------------------------------------------


def capture_before(instance: models.Model, update_fields: Iterable[str] | None = None) -> None:
    """pre_save: stash the stored row's values on the instance (a new row has none)."""
    spec = _spec_of(instance)
    if spec is None:
        return
    try:
        before, fields = None, _audited_fields(spec, instance, update_fields)
        if instance.pk is not None and not fields:
            before = {}  # e.g. save(update_fields=["last_login"]): nothing audited to compare
        elif instance.pk is not None:
            row = (
                type(instance)._base_manager.filter(pk=instance.pk)
                .values(*(f.attname for f in fields)).first()
            )  # fmt: skip
            before = None if row is None else _values(spec, fields, row.__getitem__)
        setattr(instance, _BEFORE_ATTR, before)
    except Exception:
        logger.exception("audit: could not read %s %s before saving", spec.label, instance.pk)


def record_save(instance: models.Model, created: bool, update_fields: Iterable[str] | None = None) -> None:
    """post_save: record a create with every field, or an update with the fields that changed."""
    spec = _spec_of(instance)
    if spec is None:
        return
    before = instance.__dict__.pop(_BEFORE_ATTR, _MISSING)
    try:
        fields = _audited_fields(spec, instance, update_fields)
        after = _values(spec, fields, lambda attname: getattr(instance, attname))
        if created:
            _write(spec, instance, AuditAction.CREATE, {name: (None, v) for name, v in after.items()})
            return
        if before is _MISSING:
            logger.error("audit: no stored values of %s %s to compare", spec.label, instance.pk)
            return
        before = before or {}
        changed = {n: (before.get(n), v) for n, v in after.items() if before.get(n) != v}
        if changed:
            _write(spec, instance, AuditAction.UPDATE, changed)
    except Exception:
        logger.exception("audit: could not record the save of %s %s", spec.label, instance.pk)


def record_delete(instance: models.Model) -> None:
    """post_delete: record every field's last value, then release references to the deleted row."""
    spec = _spec_of(instance)
    if spec is None:
        return
    try:
        fields = _audited_fields(spec, instance)
        before = _values(spec, fields, lambda attname: getattr(instance, attname))
        _write(spec, instance, AuditAction.DELETE, {name: (v, None) for name, v in before.items()})
        _release_references(instance)
    except Exception:
        logger.exception("audit: could not record the deletion of %s %s", spec.label, instance.pk)


def _release_references(instance: models.Model) -> None:
    # Events written during this deletion's cascade still point at the row the cascade
    # removes; Django's SET_NULL only covered events that existed when it started.
    if isinstance(instance, Tenant):
        AuditEvent.objects.filter(tenant_id=instance.pk).update(tenant=None)
    elif isinstance(instance, User):
        AuditEvent.objects.filter(actor_id=instance.pk).update(actor=None)


def _tenant_of(spec: AuditedModel, instance: models.Model) -> Tenant | None:
    if spec.tenant is None:
        return None
    if spec.tenant == SELF:
        return instance
    try:
        return getattr(instance, spec.tenant)
    except ObjectDoesNotExist:
        return None


def _write(spec: AuditedModel, instance: models.Model, action: str, changes: dict) -> None:
    context = _context.get()
    actor, actor_repr = _current_actor(context)
    request = context.request if context else None
    deleting = action == AuditAction.DELETE
    tenant = _tenant_of(spec, instance)
    with transaction.atomic():  # a savepoint: a failed insert leaves the change's transaction usable
        AuditEvent.objects.create(
            actor=None if deleting and actor is not None and actor == instance else actor,
            actor_repr=actor_repr,
            source=context.source if context else AuditSource.SYSTEM,
            action=action,
            model=instance._meta.label_lower,
            object_id=str(instance.pk),
            object_repr=str(instance)[:_OBJECT_REPR_LENGTH],
            tenant=None if deleting and tenant is instance else tenant,
            tenant_slug=tenant.slug if tenant is not None else "",
            changes={
                name: [_present(instance, name, before), _present(instance, name, after)]
                for name, (before, after) in changes.items()
            },
            request_id=getattr(request, "request_id", "") or "",
        )


# --- Export ------------------------------------------------------------------------------------


def event_record(event: AuditEvent) -> dict:
    """One event as the export and the management API show it."""
    return {
        "id": event.pk,
        "created_at": event.created_at.isoformat(),
        "actor": event.actor_repr,
        "actor_id": event.actor_id,
        "source": event.source,
        "action": event.action,
        "model": event.model,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "tenant": event.tenant_slug,
        "changes": event.changes,
        "request_id": event.request_id,
    }


def export_tenant_audit(tenant: Tenant) -> dict:
    """The tenant's audit trail, oldest first: the tenant and the objects it owns (GDPR)."""
    events = AuditEvent.objects.filter(tenant=tenant).order_by("created_at", "pk")
    return {
        "tenant": tenant.slug,
        "exported_at": timezone.now().isoformat(),
        "events": [event_record(event) for event in events],
    }


def export_response(tenant: Tenant) -> HttpResponse:
    """The export as a JSON file download (the admin action and the management API)."""
    export = export_tenant_audit(tenant)
    response = HttpResponse(json.dumps(export, indent=2), content_type=EXPORT_CONTENT_TYPE)
    filename = f"audit-{tenant.slug}-{timezone.now():%Y%m%dT%H%M%SZ}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
