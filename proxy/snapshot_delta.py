"""Incremental snapshot updates: a change costs what it changed, not the registry (SPEC 23).

Every config bump writes a `ConfigChange` row (kind, key) in its own transaction. An
instance serving version N reads the rows after N, fetches only those objects (a service
with its targets and versions, a tenant with its subscription, one API key, the few rate
policies or identity providers) and builds the next snapshot by structural sharing: the
tables a change touches are copied and patched (the API-key table by one of its 256
shards), every other table and every untouched entry is the same object as before. A full
rebuild remains for start-up, for a forced refresh, and whenever the log cannot be
trusted: a version without rows (pruned, or a bump made outside the log), a change of a
kind this module does not know (`ALL`, or a model another feature adds), or more changes
than a rebuild would cost.

All of this runs in the watcher's database thread, never on the event loop.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from proxy import snapshot as snapshot_module
from proxy.sharded_table import ShardedTable, ShardedTableDraft
from proxy.snapshot import (
    _VERSIONED_PREFIX,
    CompileError,
    ServiceEntry,
    Snapshot,
    _api_key_entry,
    _identity_provider_entry,
    _rate_policy_entry,
    _service_entry,
    _tenant_entry,
)
from proxy.snapshot_size import SizeModel, estimate_bytes, size_model
from registry.choices import ChangeKind

__all__ = ["SnapshotIndex", "SnapshotUpdate", "SnapshotUpdater", "pending_changes"]

# Tables big enough that copying them per change shows (100,000 API keys: ~13 ms a copy).
SHARDED = ("api_keys",)
REBUILD_SWITCH_INTERVAL_SECONDS = 0.0005
# Past this many changes behind, one full rebuild is cheaper than fetching them one by one.
MAX_DELTA_CHANGES = 2_000


@dataclass(frozen=True, slots=True)
class SnapshotUpdate:
    """The next snapshot and what a delta touched (the runtime refreshes only those gauges)."""

    snapshot: Snapshot
    full: bool
    services: tuple[ServiceEntry, ...] = ()  # entries a delta added or replaced
    removed_targets: frozenset[int] = frozenset()
    changes: int = 0
    size_bytes: int = 0


def _rest(prefix: str) -> str | None:
    """ "/api/v1/sales" -> "/sales": services sharing it may alias each other's versions."""
    match = _VERSIONED_PREFIX.match(prefix)
    return match.group(2) if match else None


@dataclass
class SnapshotIndex:
    """Reverse lookups a delta needs, kept in step with the snapshot they describe."""

    service_prefix: dict[int, str]
    tenant_slug: dict[int, str]
    key_hash: dict[int, str]
    groups: dict[str, set[str]]  # "/sales" -> {"/api/v1/sales", "/api/v3/sales"}
    aliases: dict[str, set[str]]  # "/sales" -> version aliases its group owns

    @classmethod
    def of(cls, snapshot: Snapshot) -> SnapshotIndex:
        groups: dict[str, set[str]] = defaultdict(set)
        for prefix in snapshot.services_by_prefix:
            if (rest := _rest(prefix)) is not None:
                groups[rest].add(prefix)
        aliases: dict[str, set[str]] = defaultdict(set)
        for alias, (owner, _version) in snapshot.version_prefixes.items():
            aliases[_rest(owner)].add(alias)
        return cls(
            service_prefix={s.id: prefix for prefix, s in snapshot.services_by_prefix.items()},
            tenant_slug={t.id: slug for slug, t in snapshot.tenants.items()},
            key_hash={k.id: key_hash for key_hash, k in snapshot.api_keys.items()},
            groups=groups,
            aliases=aliases,
        )


def pending_changes(version: int) -> list[tuple[int, str, int]] | None:
    """The (version, kind, key) rows after `version` (none: nothing logged since), or None
    when only a rebuild will do."""
    from registry.models import ConfigChange

    rows = list(
        ConfigChange.objects.filter(version__gt=version)
        .order_by("version", "pk")
        .values_list("version", "kind", "key")[: MAX_DELTA_CHANGES + 1]
    )
    if len(rows) > MAX_DELTA_CHANGES:
        return None
    expected = version + 1
    for row_version, kind, _key in rows:
        if kind not in _HANDLERS:
            return None
        if row_version == expected:
            expected += 1
        elif row_version != expected - 1:
            return None  # a version without rows: pruned, or bumped outside the log
    return rows


@dataclass
class _Draft:
    """The next snapshot being patched: a table is copied the first time a change writes it."""

    base: Snapshot
    index: SnapshotIndex
    tables: dict[str, dict] = field(default_factory=dict)
    touched: dict[int, ServiceEntry] = field(default_factory=dict)
    removed_targets: set[int] = field(default_factory=set)
    regroup: set[str] = field(default_factory=set)
    reload_policies: bool = False
    reload_providers: bool = False

    def table(self, name: str):
        if name not in self.tables:
            base = getattr(self.base, name)
            self.tables[name] = base.draft() if isinstance(base, ShardedTable) else dict(base)
        return self.tables[name]

    def finish(self, version: int) -> Snapshot:
        if self.reload_policies:
            self.tables["rate_policies"] = _rate_policies()
        if self.reload_providers:
            self.tables["identity_providers"] = _identity_providers()
        if self.regroup:
            self.tables["version_prefixes"] = self._version_prefixes()
        tables = {
            name: table.finish() if isinstance(table, ShardedTableDraft) else table
            for name, table in self.tables.items()
        }
        return replace(self.base, version=version, built_at=time.time(), **tables)

    def _version_prefixes(self) -> dict[str, tuple[str, str]]:
        """Recompute the aliases of the groups a service change touched, like the full compile."""
        aliases = dict(self.base.version_prefixes)
        services = self.tables.get("services_by_prefix", self.base.services_by_prefix)
        for rest in self.regroup:
            for alias in self.index.aliases.pop(rest, ()):
                aliases.pop(alias, None)
            fresh = {}
            for prefix in sorted(self.index.groups.get(rest, ())):  # the compile's order
                for version in services[prefix].versions:
                    alias = f"/api/v{version}{rest}"
                    if alias not in services and alias != prefix:
                        fresh[alias] = (prefix, version)
            aliases.update(fresh)
            if fresh:
                self.index.aliases[rest] = set(fresh)
        return aliases

    def note_prefix(self, prefix: str, present: bool) -> None:
        """A service prefix came or went: its group's aliases, and any alias it shadows, move."""
        rest = _rest(prefix)
        if rest is not None:
            group = self.index.groups.setdefault(rest, set())
            if present:
                group.add(prefix)
            else:
                group.discard(prefix)
            self.regroup.add(rest)
        shadowed = self.base.version_prefixes.get(prefix)
        if shadowed is not None:
            self.regroup.add(_rest(shadowed[0]))


def _service(draft: _Draft, pk: int) -> None:
    from registry.models import Service

    model = Service.objects.prefetch_related("targets", "versions").filter(pk=pk).first()
    services = draft.table("services_by_prefix")
    old_prefix = draft.index.service_prefix.pop(pk, None)
    old = services.get(old_prefix) if old_prefix is not None else None
    if old is not None and old.id == pk:
        del services[old_prefix]
        draft.removed_targets.update(t.id for t in old.targets)
        draft.note_prefix(old_prefix, present=False)
    draft.touched.pop(pk, None)
    if model is None:
        return
    entry = _with_plugins(_service_entry(model))
    services[entry.prefix] = entry
    draft.index.service_prefix[pk] = entry.prefix
    draft.touched[pk] = entry
    draft.removed_targets.difference_update(t.id for t in entry.targets)
    draft.note_prefix(entry.prefix, present=True)


def _with_plugins(entry: ServiceEntry) -> ServiceEntry:
    """The service's plugin chains, from the enabled configs that reach it (its own, and the
    global and tenant-wide ones); a plugin config's own change is a full rebuild."""
    from django.db.models import Q

    from plugins.models import PluginConfig
    from proxy.plugin_chain import attach_plugins

    reaching = PluginConfig.objects.filter(Q(service_id=entry.id) | Q(service__isnull=True), enabled=True)
    configs = list(reaching.select_related("service", "tenant"))
    return attach_plugins([entry], configs, snapshot_module._openapi_document)[0]


def _tenant(draft: _Draft, pk: int) -> None:
    from tenancy.models import Tenant

    model = snapshot_module._tenants_with_plans(Tenant).filter(pk=pk).first()
    tenants = draft.table("tenants")
    old_slug = draft.index.tenant_slug.pop(pk, None)
    if old_slug is not None and getattr(tenants.get(old_slug), "id", None) == pk:
        del tenants[old_slug]
    if model is not None:
        entry = _tenant_entry(model)
        tenants[entry.slug] = entry
        draft.index.tenant_slug[pk] = entry.slug
    if old_slug is not None and (model is None or model.slug != old_slug):
        # Keys and identity providers name the tenant by slug (deleted keys log their own rows).
        draft.reload_providers = True
        if model is not None:
            _tenant_keys(draft, pk)


def _tenant_keys(draft: _Draft, tenant_pk: int) -> None:
    from registry.models import ApiKey

    for model in ApiKey.objects.select_related("tenant").filter(tenant_id=tenant_pk):
        _put_key(draft, model)


def _api_key(draft: _Draft, pk: int) -> None:
    from registry.models import ApiKey

    model = ApiKey.objects.select_related("tenant").filter(pk=pk).first()
    if model is None:
        _drop_key(draft, pk)
    else:
        _put_key(draft, model)


def _drop_key(draft: _Draft, pk: int) -> None:
    keys = draft.table("api_keys")
    old_hash = draft.index.key_hash.pop(pk, None)
    if old_hash is not None and getattr(keys.get(old_hash), "id", None) == pk:
        del keys[old_hash]


def _put_key(draft: _Draft, model) -> None:
    entry = _api_key_entry(model)
    _drop_key(draft, model.pk)  # a rotated secret leaves its old hash behind otherwise
    draft.table("api_keys")[entry.key_hash] = entry
    draft.index.key_hash[model.pk] = entry.key_hash


def _rate_policy(draft: _Draft, _pk: int) -> None:
    draft.reload_policies = True  # a handful of rows, and their order matters: re-read them all


def _identity_provider(draft: _Draft, _pk: int) -> None:
    draft.reload_providers = True


def _rate_policies() -> tuple:
    from registry.models import RatePolicy

    return tuple(
        _rate_policy_entry(p) for p in RatePolicy.objects.filter(enabled=True).prefetch_related("plans")
    )


def _identity_providers() -> dict:
    from tenancy.models import IdentityProvider

    providers = IdentityProvider.objects.filter(enabled=True).select_related("default_tenant")
    return {p.issuer: _identity_provider_entry(p) for p in providers}


_HANDLERS: dict[str, Callable[[_Draft, int], None]] = {
    ChangeKind.SERVICE: _service,
    ChangeKind.TENANT: _tenant,
    ChangeKind.API_KEY: _api_key,
    ChangeKind.RATE_POLICY: _rate_policy,
    ChangeKind.IDENTITY_PROVIDER: _identity_provider,
}


@contextmanager
def _short_gil_slices():
    """While a long compile holds the GIL in this thread, the event loop waits up to the
    switch interval each time it wants it back, several times per request (5 ms by
    default). A shorter interval for the rebuild's duration bounds that wait; the rebuild
    still takes a core (make bench-scale: p99 during one is several times idle)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, REBUILD_SWITCH_INTERVAL_SECONDS))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _database_version() -> int:
    from registry.config_version import current_config_version

    return current_config_version()


def _unique(rows: Iterable[tuple[int, str, int]]) -> list[tuple[str, int]]:
    """Each object once: a handler reads its current row, so a second visit adds nothing."""
    return list(dict.fromkeys((kind, key) for _version, kind, key in rows))


class SnapshotUpdater:
    """Produces the watcher's next snapshot, by delta when the change log allows it.

    Holds the index of the last snapshot it produced; anything unexpected (an error halfway
    through a delta, a snapshot installed by someone else) drops it, and the next update is
    a full rebuild.
    """

    def __init__(self) -> None:
        self._base: Snapshot | None = None
        self._index: SnapshotIndex | None = None
        self._sizes = SizeModel()

    def next(self, current: Snapshot, force: bool = False, newest: int | None = None) -> SnapshotUpdate:
        """`newest`: the version the watcher saw announced (read from the database if None);
        rows that stop short of it mean bumps without rows, which only a rebuild covers."""
        if not force and current is self._base and self._index is not None:
            newest = _database_version() if newest is None else newest
            rows = pending_changes(current.version)
            if rows and rows[-1][0] >= newest:
                return self._delta(current, rows)
            if rows == [] and newest == current.version:
                return SnapshotUpdate(current, full=False)  # nothing moved
        return self._full()

    def _full(self) -> SnapshotUpdate:
        self._base = self._index = None
        with _short_gil_slices():
            snapshot = snapshot_module.compile_snapshot()  # looked up now: tests replace it
        snapshot = replace(snapshot, **{name: ShardedTable.of(getattr(snapshot, name)) for name in SHARDED})
        self._index = SnapshotIndex.of(snapshot)
        self._base = snapshot
        self._sizes = size_model(snapshot)
        return SnapshotUpdate(snapshot, full=True, size_bytes=estimate_bytes(snapshot, self._sizes))

    def _delta(self, current: Snapshot, rows: list[tuple[int, str, int]]) -> SnapshotUpdate:
        version = rows[-1][0]
        index, self._index = self._index, None  # half-patched if a handler fails
        draft = _Draft(current, index)
        try:
            for kind, key in _unique(rows):
                _HANDLERS[kind](draft, key)
            snapshot = draft.finish(version)
        except CompileError as exc:
            exc.version = version
            raise
        self._base, self._index = snapshot, index
        return SnapshotUpdate(
            snapshot,
            full=False,
            services=tuple(draft.touched.values()),
            removed_targets=frozenset(draft.removed_targets),
            changes=len(rows),
            size_bytes=estimate_bytes(snapshot, self._sizes),
        )
