"""What the file holds: one `Kind` per model, the single truth for export, apply and the schema.

A kind's fields are the model's own editable fields (so a field added to a model appears in
the file, the schema and the diff without a change here), minus runtime state the gateway
writes itself (health, last use), plus the references to other kinds by natural key.

Not here on purpose: users, passwords, API-key secrets, audit events, alerts and deliveries
(data, not configuration). Many-to-many fields (a plan's default rate policies) are written
as sorted lists of the related objects' natural keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from django.apps import apps
from django.db import models

__all__ = ["KINDS", "TENANT_DATA", "TOP_LEVEL", "Kind", "Reference"]

# Tenants that signed up are data, not config (SPEC section 18).
TENANT_DATA = frozenset({"tenants", "subscription", "api_keys"})
# Written by the gateway itself, not by whoever manages it.
_BOOKKEEPING = frozenset({"created_at", "updated_at"})


@dataclass(frozen=True)
class Reference:
    """A foreign key written as the related object's natural key (`service: sales`)."""

    kind: str
    key_field: str


@dataclass(frozen=True)
class Kind:
    """How one model appears in the file: its list name, natural key and fields."""

    name: str
    label: str
    key: tuple[str, ...]
    exclude: frozenset[str] = frozenset()
    include: tuple[str, ...] = ()  # non-editable fields the file still carries (API-key hashes)
    references: dict[str, Reference] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    parent: str | None = None  # foreign key to the enclosing entry, for nested kinds
    children: tuple[str, ...] = ()
    single: bool = False  # a one-to-one child: an object, not a list
    optional_children: tuple[str, ...] = ()  # left out of exports unless asked for
    many: dict[str, Reference] = field(default_factory=dict)  # many-to-many, by natural keys

    @property
    def model(self) -> type[models.Model]:
        return apps.get_model(self.label)

    @cached_property
    def fields(self) -> tuple[models.Field, ...]:
        """The model fields the file carries, in a stable order (key first, then by name)."""
        skipped = _BOOKKEEPING | self.exclude | {self.parent}
        chosen = [
            f
            for f in self.model._meta.concrete_fields
            if not f.primary_key and f.name not in skipped and (f.editable or f.name in self.include)
        ]
        return tuple(sorted(chosen, key=lambda f: (f.name not in self.key, f.name)))

    @property
    def tenant_data(self) -> bool:
        """Tenants and what hangs off them are data: only `--prune-tenants` deletes them."""
        return self.name in TENANT_DATA


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "tenants",
            "tenancy.Tenant",
            key=("slug",),
            children=("subscription", "api_keys"),
            optional_children=("api_keys",),
        ),
        Kind(
            "subscription",
            "tenancy.Subscription",
            key=(),
            references={"plan": Reference("plans", "name")},
            parent="tenant",
            single=True,
        ),
        Kind(
            "plans",
            "tenancy.Plan",
            key=("name",),
            children=("service_quotas",),
            many={"rate_policies": Reference("rate_policies", "name")},
        ),
        Kind(
            "service_quotas",
            "tenancy.ServiceQuota",
            key=("service",),
            references={"service": Reference("services", "slug")},
            parent="plan",
        ),
        Kind(
            "api_keys",
            "registry.ApiKey",
            key=("key_hash",),
            include=("prefix", "key_hash"),
            exclude=frozenset({"last_used_at"}),
            parent="tenant",
        ),
        Kind("services", "registry.Service", key=("slug",), children=("versions", "targets")),
        Kind("versions", "registry.ServiceVersion", key=("version",), parent="service"),
        Kind(
            "targets",
            "registry.Target",
            key=("url", "version"),
            # Health and breaker resets are runtime state the sweep and staff write.
            exclude=frozenset({"healthy", "last_checked_at", "breaker_reset_at"}),
            parent="service",
        ),
        Kind(
            "rate_policies",
            "registry.RatePolicy",
            key=("name",),
            references={"service": Reference("services", "slug")},
        ),
        Kind(
            "identity_providers",
            "tenancy.IdentityProvider",
            key=("name",),
            references={"default_tenant": Reference("tenants", "slug")},
            secrets=("client_secret",),
        ),
        Kind(
            "notification_rules",
            "alerts.NotificationRule",
            key=("tenant", "channel", "destination"),
            references={"tenant": Reference("tenants", "slug")},
        ),
        Kind(
            "plugins",
            "plugins.PluginConfig",
            key=("plugin", "service", "tenant"),
            references={"service": Reference("services", "slug"), "tenant": Reference("tenants", "slug")},
        ),
    )
}
# Applied in this order (references point backwards), deleted in the reverse order.
TOP_LEVEL = (
    "services",
    "rate_policies",
    "plans",
    "tenants",
    "identity_providers",
    "notification_rules",
    "plugins",
)
