"""The data plane's view of the registry: immutable plain dataclasses, swapped atomically.

`compile_snapshot()` is the only place the data plane touches the ORM, and it runs in a
background thread when the config version moves; requests read `current()` and never
query the database (SPEC section 3). Each object is compiled by a step that names it: a
value that slipped past validation fails as a `CompileError` saying which object it was
(SPEC section 16), so staff can find and fix it.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import wraps
from urllib.parse import urlsplit

from django import db

from gateway_project.core.tls import TlsFiles, upstream_ssl_context
from proxy.breaker import BreakerSettings
from registry.constants import READ_METHODS

_VERSIONED_PREFIX = re.compile(r"^/api/v([0-9]+)(/.+)$")


def http_date(epoch: float) -> str:
    return formatdate(epoch, usegmt=True)


__all__ = [
    "ApiKeyEntry",
    "CompileError",
    "HeaderTransforms",
    "IdentityProviderEntry",
    "QuotaTerms",
    "VersionEntry",
    "RatePolicyEntry",
    "ServiceEntry",
    "Snapshot",
    "TargetEntry",
    "TenantEntry",
    "assemble_snapshot",
    "compile_snapshot",
    "http_date",
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
    tls: object = None  # an ssl.SSLContext for a target's own CA / client certificate, else None

    @property
    def label(self) -> str:
        return str(self.id)


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """One API version's targets (split like the service's) and its deprecation headers."""

    version: str
    pool: tuple[TargetEntry, ...]
    demo_pool: tuple[TargetEntry, ...]
    healthy_pool: tuple[TargetEntry, ...]
    healthy_demo_pool: tuple[TargetEntry, ...]
    deprecation_headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class HeaderTransforms:
    """Lowercased header edits for one direction: add, remove, rename."""

    add: tuple[tuple[str, str], ...] = ()
    remove: frozenset[str] = frozenset()
    rename: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.rename)


@dataclass(frozen=True, slots=True)
class IdentityProviderEntry:
    id: int
    issuer: str
    jwks_url: str
    introspection_url: str
    client_id: str
    client_secret: str
    audience: str
    algorithms: tuple[str, ...]
    tenant_claim: str
    default_tenant: str | None
    roles_claim: str
    scopes_claim: str
    role_mapping: dict[str, str]


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
    cache_ttl: int = 0
    cache_generation: int = 0
    default_version: str = "1"
    versions: dict[str, VersionEntry] = field(default_factory=dict)
    ip_allow: tuple = ()
    ip_deny: tuple = ()
    request_transforms: HeaderTransforms | None = None
    response_transforms: HeaderTransforms | None = None
    openapi_path: str = ""
    plugins: object = None  # proxy.plugin_chain.ServicePlugins when a plugin reaches this service

    def upstream_path_for(self, path: str, prefix: str | None = None) -> str:
        """The path sent upstream: the matched prefix replaced by the service's rewrite."""
        rest = path[len(prefix or self.prefix) :]
        return (self.upstream_path + rest) or "/"

    def is_public(self, path: str, prefix: str | None = None) -> bool:
        rest = path[len(prefix or self.prefix) :] or "/"
        return any(rest == p or rest.startswith(p.rstrip("/") + "/") for p in self.public_paths)

    def required(self, method: str) -> tuple[frozenset[str], frozenset[str]]:
        return self.required_for(method not in READ_METHODS)

    def required_for(self, writes: bool) -> tuple[frozenset[str], frozenset[str]]:
        """(roles, scopes) a caller needs: the write set for writes, else the read set."""
        if writes:
            return self.write_roles, self.write_scopes
        return self.read_roles, self.read_scopes


@dataclass(frozen=True, slots=True)
class QuotaTerms:
    """A tenant's plan as the limiter needs it (SPEC section 20): monthly quotas and the
    names of the plan's default rate policies."""

    plan: str
    monthly: int | None
    per_service: tuple[tuple[int, int], ...] = ()  # (service id, monthly quota)
    policies: frozenset[str] = frozenset()

    def service_quota(self, service_id: int) -> int | None:
        return next((quota for sid, quota in self.per_service if sid == service_id), None)


@dataclass(frozen=True, slots=True)
class TenantEntry:
    slug: str
    plan: str
    read_only: bool
    read_only_reason: str
    is_demo: bool
    subscription_status: str
    grace_ends_at: float
    ip_allow: tuple = ()
    ip_deny: tuple = ()
    quota: QuotaTerms | None = None
    id: int = 0  # the tenant's primary key: a delta finds its entry after a slug change


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
    plans: frozenset[str] = frozenset()  # plans listing it as a default policy; empty: every plan
    resets_at: int = 0  # quotas only: epoch seconds at which the period's count starts over


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    services_by_prefix: dict[str, ServiceEntry] = field(default_factory=dict)
    tenants: dict[str, TenantEntry] = field(default_factory=dict)
    api_keys: dict[str, ApiKeyEntry] = field(default_factory=dict)
    rate_policies: tuple[RatePolicyEntry, ...] = ()
    identity_providers: dict[str, IdentityProviderEntry] = field(default_factory=dict)
    # "/api/v2/sales" -> ("/api/v1/sales", "2"): version prefixes of registered services.
    version_prefixes: dict[str, tuple[str, str]] = field(default_factory=dict)
    built_at: float = 0.0
    loaded: bool = False

    def match(self, path: str) -> ServiceEntry | None:
        """Longest registered prefix wins; prefixes end at a segment boundary."""
        route = self.route(path)
        return route[0] if route is not None else None

    def route(self, path: str) -> tuple[ServiceEntry, str, str | None] | None:
        """(service, the prefix the path matched, version named by the path or None)."""
        services = self.services_by_prefix
        versions = self.version_prefixes
        candidate = path
        while candidate:
            service = services.get(candidate)
            if service is not None:
                return service, candidate, None
            if versions and (alias := versions.get(candidate)) is not None:
                return services[alias[0]], candidate, alias[1]
            cut = candidate.rfind("/")
            if cut <= 0:
                return None
            candidate = candidate[:cut]
        return None

    @property
    def services(self) -> list[ServiceEntry]:
        return list(self.services_by_prefix.values())


class CompileError(Exception):
    """One registry object could not be compiled; `subject` names it for staff, e.g.
    "subscription 3 (bakery-madrid)", and the message adds what was wrong with it."""

    def __init__(self, kind: str, key, name: str, cause: BaseException) -> None:
        self.kind, self.key, self.name = kind, key, name
        self.version: int | None = None  # the registry version being compiled, once known
        self.subject = f"{kind} {key} ({name})" if name else f"{kind} {key}"
        self.cause = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        super().__init__(f"{self.subject}: {self.cause}")


def _names_failures(kind: str, describe: Callable[[object], str]):
    """Compile one object with a failure that names it (the innermost object wins).

    Database errors pass through unnamed: a database that went away is not a bad object.
    """

    def decorate(build):
        @wraps(build)
        def compile_one(obj, *args):
            try:
                return build(obj, *args)
            except (CompileError, db.Error):
                raise
            except Exception as exc:
                raise CompileError(kind, obj.pk, _safe_name(describe, obj), exc) from exc

        return compile_one

    return decorate


def _safe_name(describe: Callable[[object], str], obj) -> str:
    """The object's readable name, or none when reading it fails as well."""
    try:
        return describe(obj)
    except Exception:
        return ""


def _epoch(value) -> float | None:
    return value.timestamp() if value is not None else None


@_names_failures("target", lambda t: f"{t.service.slug} → {t.url}")
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
        tls=upstream_ssl_context(TlsFiles.of(target)),
    )


def _networks(cidrs) -> tuple:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _transforms(spec: dict | None) -> HeaderTransforms | None:
    if not spec:
        return None
    transforms = HeaderTransforms(
        add=tuple((k.lower(), v) for k, v in (spec.get("add") or {}).items()),
        remove=frozenset(n.lower() for n in spec.get("remove") or ()),
        rename=tuple((k.lower(), v.lower()) for k, v in (spec.get("rename") or {}).items()),
    )
    return None if transforms.empty else transforms


@_names_failures("service version", lambda v: f"{v.service.slug} v{v.version}")
def _deprecation_headers(version) -> tuple[tuple[bytes, bytes], ...]:
    """RFC 9745 Deprecation (a structured date) and RFC 8594 Sunset (an HTTP date)."""
    headers = []
    if version.deprecated:
        since = version.deprecated_at or version.updated_at
        headers.append((b"deprecation", f"@{int(since.timestamp())}".encode()))
    if version.sunset_at is not None:
        headers.append((b"sunset", http_date(version.sunset_at.timestamp()).encode()))
    return tuple(headers)


def _pools(targets) -> tuple[tuple, tuple, tuple, tuple]:
    serving = [t for t in targets if t.enabled and t.weight > 0]
    pool = tuple(t for t in serving if not t.demo_only)
    demo_pool = tuple(t for t in serving if t.demo_only)
    return (
        pool,
        demo_pool,
        tuple(t for t in pool if t.healthy),
        tuple(t for t in demo_pool if t.healthy),
    )


@_names_failures("service", lambda s: s.slug)
def _service_entry(service) -> ServiceEntry:
    all_targets = list(service.targets.all())
    targets = tuple(_target_entry(t) for t in all_targets)
    default = service.default_version
    by_version: dict[str, list[TargetEntry]] = {}
    for model, entry in zip(all_targets, targets, strict=True):
        by_version.setdefault(model.version or default, []).append(entry)
    pool, demo_pool, healthy_pool, healthy_demo_pool = _pools(by_version.get(default, []))
    versions = {
        v.version: VersionEntry(v.version, *_pools(by_version.get(v.version, [])), _deprecation_headers(v))
        for v in service.versions.all()
    }
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
        healthy_pool=healthy_pool,
        healthy_demo_pool=healthy_demo_pool,
        cache_ttl=service.cache_ttl,
        cache_generation=service.cache_generation,
        default_version=default,
        versions=versions,
        ip_allow=_networks(service.ip_allow),
        ip_deny=_networks(service.ip_deny),
        request_transforms=_transforms((service.header_transforms or {}).get("request")),
        response_transforms=_transforms((service.header_transforms or {}).get("response")),
        openapi_path=service.openapi_path,
    )


@_names_failures("subscription", lambda s: s.tenant.slug)
def _subscription_terms(subscription) -> tuple[str, float]:
    """(status, end of grace as epoch seconds) of a tenant's subscription."""
    return subscription.status, subscription.grace_ends_at.timestamp()


@_names_failures("plan", lambda p: p.name)
def _quota_terms(plan) -> QuotaTerms:
    return QuotaTerms(
        plan=plan.name,
        monthly=plan.monthly_request_quota,
        per_service=tuple((q.service_id, q.monthly_request_quota) for q in plan.service_quotas.all()),
        policies=frozenset(p.name for p in plan.rate_policies.all()),
    )


@_names_failures("tenant", lambda t: t.slug)
def _tenant_entry(tenant) -> TenantEntry:
    subscription = getattr(tenant, "subscription", None)
    quota = None
    if subscription is None:
        status, grace_ends_at = "active", float("inf")
    else:
        status, grace_ends_at = _subscription_terms(subscription)
        if subscription.plan is not None:
            quota = _quota_terms(subscription.plan)
    return TenantEntry(
        slug=tenant.slug,
        plan=tenant.plan,
        read_only=tenant.read_only,
        read_only_reason=tenant.read_only_reason,
        is_demo=tenant.is_demo,
        subscription_status=status,
        grace_ends_at=grace_ends_at,
        ip_allow=_networks(tenant.ip_allow),
        ip_deny=_networks(tenant.ip_deny),
        quota=quota,
        id=tenant.pk,
    )


def compile_snapshot() -> Snapshot:
    """Read the whole registry in a handful of queries and freeze it (runs off the event loop)."""
    from django.db import transaction

    from registry.config_version import current_config_version

    with transaction.atomic():  # one consistent view of every table
        version = current_config_version()
        try:
            return _compile(version)
        except CompileError as exc:
            exc.version = version
            raise


def _compile(version: int) -> Snapshot:
    """Every object through its naming step, inside compile_snapshot's transaction."""
    from plugins.models import PluginConfig
    from registry.models import ApiKey, RatePolicy, Service
    from tenancy.models import IdentityProvider, Tenant

    return assemble_snapshot(
        version,
        services=Service.objects.prefetch_related("targets", "versions"),
        tenants=_tenants_with_plans(Tenant),
        api_keys=ApiKey.objects.select_related("tenant"),
        rate_policies=RatePolicy.objects.filter(enabled=True).prefetch_related("plans"),
        identity_providers=IdentityProvider.objects.filter(enabled=True).select_related("default_tenant"),
        plugin_configs=PluginConfig.objects.filter(enabled=True).select_related("service", "tenant"),
    )


def assemble_snapshot(
    version: int,
    *,
    services,
    tenants,
    api_keys,
    rate_policies,
    identity_providers,
    plugin_configs=(),
    document_for=None,
) -> Snapshot:
    """Freeze registry objects through the naming steps: rows read from the database, or
    the unsaved objects a data plane builds from its config file (`declarative.standalone`),
    so both compile to the same snapshot. Rate policies, providers and plugins: the enabled
    ones. `document_for` gives a service's OpenAPI document to the plugins that read it (a
    data plane has none: no database of fetched documents)."""
    from proxy.plugin_chain import attach_plugins

    entries = [_service_entry(s) for s in services]
    services = attach_plugins(entries, list(plugin_configs), document_for or _openapi_document)
    return Snapshot(
        version=version,
        services_by_prefix={s.prefix: s for s in services},
        version_prefixes=_version_prefixes(services),
        identity_providers={p.issuer: _identity_provider_entry(p) for p in identity_providers},
        tenants={t.slug: _tenant_entry(t) for t in tenants},
        api_keys={k.key_hash: _api_key_entry(k) for k in api_keys},
        rate_policies=tuple(_rate_policy_entry(p) for p in rate_policies),
        built_at=time.time(),
        loaded=True,
    )


def _listing_plans(policy) -> frozenset[str]:
    """The plans listing a policy as a default (prefetched by compile_snapshot, or filled in
    from memory by a data plane's file compile); never a query for an unsaved object."""
    if policy._state.adding and "plans" not in getattr(policy, "_prefetched_objects_cache", {}):
        return frozenset()
    return frozenset(plan.name for plan in policy.plans.all())


def _tenants_with_plans(tenant_model):
    return tenant_model.objects.select_related("subscription__plan").prefetch_related(
        "subscription__plan__service_quotas", "subscription__plan__rate_policies"
    )


@_names_failures("API key", lambda k: f"{k.tenant.slug}, {k.name}")
def _api_key_entry(key) -> ApiKeyEntry:
    return ApiKeyEntry(
        id=key.pk,
        key_hash=key.key_hash,
        tenant=key.tenant.slug,
        scopes=frozenset(key.scopes),
        role=key.role,
        expires_at=_epoch(key.expires_at),
        revoked=key.revoked,
    )


@_names_failures("rate policy", lambda p: p.name)
def _rate_policy_entry(policy) -> RatePolicyEntry:
    return RatePolicyEntry(
        name=policy.name,
        scope=policy.scope,
        service_id=policy.service_id,
        methods=frozenset(policy.methods),
        role=policy.role,
        plan=policy.plan,
        limit=policy.limit,
        window_seconds=policy.window_seconds,
        burst=policy.burst,
        algorithm=policy.algorithm,
        fail_mode=policy.fail_mode,
        plans=_listing_plans(policy),
    )


def _openapi_document(service: ServiceEntry) -> dict | None:
    """The service's OpenAPI document for the plugins that read it (request-validator, mock)."""
    if not service.openapi_path:
        return None
    from registry.apidocs.documents import service_document

    return service_document(service.slug)


def _version_prefixes(services: list[ServiceEntry]) -> dict[str, tuple[str, str]]:
    """/api/v1/sales with version 2 is also reachable as /api/v2/sales (unless registered)."""
    taken = {s.prefix for s in services}
    aliases = {}
    for service in services:
        match = _VERSIONED_PREFIX.match(service.prefix)
        if not match:
            continue
        for version in service.versions:
            alias = f"/api/v{version}{match.group(2)}"
            if alias not in taken and alias != service.prefix:
                aliases[alias] = (service.prefix, version)
    return aliases


@_names_failures("identity provider", lambda p: p.issuer)
def _identity_provider_entry(provider) -> IdentityProviderEntry:
    return IdentityProviderEntry(
        id=provider.pk,
        issuer=provider.issuer,
        jwks_url=provider.jwks_url,
        introspection_url=provider.introspection_url,
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        audience=provider.audience,
        algorithms=tuple(provider.algorithms or ("RS256",)),
        tenant_claim=provider.tenant_claim,
        default_tenant=provider.default_tenant.slug if provider.default_tenant_id else None,
        roles_claim=provider.roles_claim,
        scopes_claim=provider.scopes_claim,
        role_mapping=dict(provider.role_mapping or {}),
    )
