"""The data plane's view of the registry: immutable plain dataclasses, swapped atomically.

`compile_snapshot()` is the only place the data plane touches the ORM, and it runs in a
background thread when the config version moves; requests read `current()` and never
query the database (SPEC section 3).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from registry.constants import READ_METHODS
from proxy.breaker import BreakerSettings

__all__ = [
    "ApiKeyEntry",
    "RatePolicyEntry",
    "ServiceEntry",
    "Snapshot",
    "TargetEntry",
    "TenantEntry",
    "compile_snapshot",
    "current",
    "install",
]


@dataclass(frozen=True, slots=True)
class TargetEntry:
    id: int
    url: str
    host_header: str
    weight: int
    enabled: bool
    demo_only: bool
    healthy: bool
    breaker_reset_at: float | None

    @property
    def label(self) -> str:
        return str(self.id)


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    id: int
    slug: str
    prefix: str
    upstream_path: str
    load_balancing: str
    connect_timeout: float
    read_timeout: float
    retries: int
    allowed_methods: frozenset[str]
    allow_header: str
    auth_required: bool
    public_paths: tuple[str, ...]
    read_roles: frozenset[str]
    read_scopes: frozenset[str]
    write_roles: frozenset[str]
    write_scopes: frozenset[str]
    breaker: BreakerSettings
    health_path: str
    health_interval: int
    websocket_enabled: bool
    max_body_bytes: int
    enabled: bool
    targets: tuple[TargetEntry, ...]
    has_demo_targets: bool
    # Enabled targets with weight > 0, split by demo-only, then by last health result.
    pool: tuple[TargetEntry, ...] = ()
    demo_pool: tuple[TargetEntry, ...] = ()
    healthy_pool: tuple[TargetEntry, ...] = ()
    healthy_demo_pool: tuple[TargetEntry, ...] = ()

    def upstream_path_for(self, path: str) -> str:
        """The path sent upstream: the prefix replaced by the service's rewrite."""
        rest = path[len(self.prefix):]
        return (self.upstream_path + rest) or "/"

    def is_public(self, path: str) -> bool:
        rest = path[len(self.prefix):] or "/"
        return any(rest == p or rest.startswith(p.rstrip("/") + "/") for p in self.public_paths)

    def required(self, method: str) -> tuple[frozenset[str], frozenset[str]]:
        if method in READ_METHODS:
            return self.read_roles, self.read_scopes
        return self.write_roles, self.write_scopes


@dataclass(frozen=True, slots=True)
class TenantEntry:
    slug: str
    plan: str
    read_only: bool
    read_only_reason: str
    is_demo: bool
    subscription_status: str
    grace_ends_at: float


@dataclass(frozen=True, slots=True)
class ApiKeyEntry:
    id: int
    key_hash: str
    tenant: str
    scopes: frozenset[str]
    role: str
    expires_at: float | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class RatePolicyEntry:
    name: str
    scope: str
    service_id: int | None
    methods: frozenset[str]
    role: str
    plan: str
    limit: int
    window_seconds: int
    burst: int
    algorithm: str
    fail_mode: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    services_by_prefix: dict[str, ServiceEntry] = field(default_factory=dict)
    tenants: dict[str, TenantEntry] = field(default_factory=dict)
    api_keys: dict[str, ApiKeyEntry] = field(default_factory=dict)
    rate_policies: tuple[RatePolicyEntry, ...] = ()
    built_at: float = 0.0
    loaded: bool = False

    def match(self, path: str) -> ServiceEntry | None:
        """Longest registered prefix wins; prefixes end at a segment boundary."""
        services = self.services_by_prefix
        candidate = path
        while candidate:
            service = services.get(candidate)
            if service is not None:
                return service
            cut = candidate.rfind("/")
            if cut <= 0:
                return None
            candidate = candidate[:cut]
        return None

    @property
    def services(self) -> list[ServiceEntry]:
        return list(self.services_by_prefix.values())


def _epoch(value) -> float | None:
    return value.timestamp() if value is not None else None


def _target_entry(target) -> TargetEntry:
    parts = urlsplit(target.url)
    return TargetEntry(
        id=target.pk,
        url=target.url.rstrip("/"),
        host_header=parts.netloc,
        weight=target.weight,
        enabled=target.enabled,
        demo_only=target.demo_only,
        healthy=target.healthy,
        breaker_reset_at=_epoch(target.breaker_reset_at),
    )


def _service_entry(service) -> ServiceEntry:
    targets = tuple(_target_entry(t) for t in service.targets.all())
    serving = [t for t in targets if t.enabled and t.weight > 0]
    pool = tuple(t for t in serving if not t.demo_only)
    demo_pool = tuple(t for t in serving if t.demo_only)
    methods = frozenset(m.upper() for m in service.allowed_methods)
    return ServiceEntry(
        id=service.pk,
        slug=service.slug,
        prefix=service.path_prefix.rstrip("/"),
        upstream_path=service.upstream_path.rstrip("/"),
        load_balancing=service.load_balancing,
        connect_timeout=service.connect_timeout,
        read_timeout=service.read_timeout,
        retries=service.retries,
        allowed_methods=methods,
        allow_header=", ".join(sorted(methods)),
        auth_required=service.auth_required,
        public_paths=tuple(service.public_paths),
        read_roles=frozenset(service.read_roles),
        read_scopes=frozenset(service.read_scopes),
        write_roles=frozenset(service.write_roles),
        write_scopes=frozenset(service.write_scopes),
        breaker=BreakerSettings(
            failure_threshold=service.breaker_failure_threshold,
            failure_window=float(service.breaker_failure_window),
            minimum_throughput=service.breaker_minimum_throughput,
            recovery_timeout=float(service.breaker_recovery_timeout),
            success_threshold=service.breaker_success_threshold,
        ),
        health_path=service.health_path,
        health_interval=service.health_interval,
        websocket_enabled=service.websocket_enabled,
        max_body_bytes=service.max_body_bytes,
        enabled=service.enabled,
        targets=targets,
        has_demo_targets=bool(demo_pool),
        pool=pool,
        demo_pool=demo_pool,
        healthy_pool=tuple(t for t in pool if t.healthy),
        healthy_demo_pool=tuple(t for t in demo_pool if t.healthy),
    )


def _tenant_entry(tenant) -> TenantEntry:
    subscription = getattr(tenant, "subscription", None)
    if subscription is None:
        status, grace_ends_at = "active", float("inf")
    else:
        status, grace_ends_at = subscription.status, subscription.grace_ends_at.timestamp()
    return TenantEntry(
        slug=tenant.slug,
        plan=tenant.plan,
        read_only=tenant.read_only,
        read_only_reason=tenant.read_only_reason,
        is_demo=tenant.is_demo,
        subscription_status=status,
        grace_ends_at=grace_ends_at,
    )


def compile_snapshot() -> Snapshot:
    """Read the whole registry in a handful of queries and freeze it (runs off the event loop)."""
    from django.db import transaction

    from registry.config_version import current_config_version
    from registry.models import ApiKey, RatePolicy, Service
    from tenancy.models import Tenant

    with transaction.atomic():  # one consistent view of every table
        version = current_config_version()
        services = Service.objects.prefetch_related("targets")
        tenants = Tenant.objects.select_related("subscription")
        keys = ApiKey.objects.select_related("tenant")
        policies = RatePolicy.objects.filter(enabled=True)
        return Snapshot(
            version=version,
            services_by_prefix={s.path_prefix.rstrip("/"): _service_entry(s) for s in services},
            tenants={t.slug: _tenant_entry(t) for t in tenants},
            api_keys={
                k.key_hash: ApiKeyEntry(
                    id=k.pk, key_hash=k.key_hash, tenant=k.tenant.slug,
                    scopes=frozenset(k.scopes), role=k.role,
                    expires_at=_epoch(k.expires_at), revoked=k.revoked,
                )
                for k in keys
            },
            rate_policies=tuple(
                RatePolicyEntry(
                    name=p.name, scope=p.scope, service_id=p.service_id,
                    methods=frozenset(p.methods), role=p.role, plan=p.plan, limit=p.limit,
                    window_seconds=p.window_seconds, burst=p.burst, algorithm=p.algorithm,
                    fail_mode=p.fail_mode,
                )
                for p in policies
            ),
            built_at=time.time(),
            loaded=True,
        )


_current = Snapshot(version=-1)
_listeners: list = []


def current() -> Snapshot:
    return _current


def install(snapshot: Snapshot) -> None:
    """Swap in a new snapshot (a single reference assignment: atomic for readers)."""
    global _current
    _current = snapshot
    for listener in _listeners:
        listener(snapshot)


def on_install(listener) -> None:
    """Call `listener(snapshot)` after every swap (breaker resets, metrics)."""
    _listeners.append(listener)
