"""Plugin chains compiled into the snapshot, once per config version (SPEC section 19).

Each service gets the enabled PluginConfigs that reach it, resolved here rather than per
request: for one plugin configured at several scopes only the most specific runs
(service+tenant, then tenant, then service, then global, as Kong does), and the chain runs
by priority, highest first; equal priorities run global, service, tenant, service+tenant,
then by id. A service with no plugin keeps `plugins = None`: the request path checks that
one attribute and moves on.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from plugins.discovery import catalogue
from plugins.interface import PluginContext

__all__ = ["BoundPlugin", "Chain", "ServicePlugins", "attach_plugins"]

logger = logging.getLogger("gateway.plugins")

# Scope rank: which config of one plugin wins (higher), and the tie-break among equal priorities.
_GLOBAL, _SERVICE, _TENANT, _SERVICE_TENANT = range(4)


class PluginUnavailable(Exception):
    """A configured plugin that this instance cannot run (not installed here, or its setup failed)."""


@dataclass(frozen=True, slots=True)
class BoundPlugin:
    """One plugin instance with its hooks looked up once, and its time limit in seconds."""

    name: str
    instance: Any
    timeout: float
    access: Any = None
    response: Any = None
    log: Any = None


@dataclass(frozen=True, slots=True)
class Chain:
    """The hooks one request runs, in order; `after_failure` keeps only the log hooks."""

    access: tuple[BoundPlugin, ...] = ()
    response: tuple[BoundPlugin, ...] = ()
    log: tuple[BoundPlugin, ...] = ()
    reads_body: bool = False  # a plugin wants the body: read before the hooks, not in their time

    @property
    def after_failure(self) -> Chain | None:
        return Chain(log=self.log) if self.log else None


@dataclass(frozen=True, slots=True)
class ServicePlugins:
    """A service's chain for callers of no configured tenant, and the chains of those that are."""

    base: Chain | None
    by_tenant: dict[str, Chain] = field(default_factory=dict)

    def for_tenant(self, tenant: str | None) -> Chain | None:
        if tenant is not None and self.by_tenant:
            return self.by_tenant.get(tenant, self.base)
        return self.base


def attach_plugins(services: list, configs: list, document_for) -> list:
    """The services with their chains, from the enabled PluginConfigs (rows or a data
    plane's unsaved objects); runs inside the snapshot compile."""
    if not configs:
        return services
    return [_with_plugins(service, configs, document_for) for service in services]


def _with_plugins(service, configs: list, document_for):
    reaching = [c for c in configs if c.service_id in (None, service.id)]
    if not reaching:
        return service
    bound: dict[int, BoundPlugin] = {}
    untenanted = [c for c in reaching if c.tenant_id is None]
    tenants = {c.tenant.slug for c in reaching if c.tenant_id is not None}

    def chain(chosen: list) -> Chain | None:
        return _chain([bound.setdefault(c.pk, _bind(c, service, document_for)) for c in _ordered(chosen)])

    by_tenant = {}
    for slug in sorted(tenants):
        tenant_chain = chain(untenanted + [c for c in reaching if c.tenant_id and c.tenant.slug == slug])
        if tenant_chain is not None:
            by_tenant[slug] = tenant_chain
    plugins = ServicePlugins(chain(untenanted), by_tenant)
    if plugins.base is None and not by_tenant:
        return service
    return replace(service, plugins=plugins)


def _rank(config) -> int:
    if config.service_id and config.tenant_id:
        return _SERVICE_TENANT
    if config.tenant_id:
        return _TENANT
    return _SERVICE if config.service_id else _GLOBAL


def _ordered(configs: list) -> list:
    """The most specific config of each plugin, highest priority first (ties: scope, then id)."""
    winners: dict[str, Any] = {}
    for config in configs:
        held = winners.get(config.plugin)
        if held is None or _rank(config) > _rank(held):
            winners[config.plugin] = config
    return sorted(winners.values(), key=lambda c: (-_priority(c), _rank(c), c.pk))


def _priority(config) -> int:
    if config.priority is not None:
        return config.priority
    plugin = catalogue().get(config.plugin)
    return plugin.priority if plugin is not None else 0


def _chain(plugins: list[BoundPlugin]) -> Chain | None:
    if not plugins:
        return None
    return Chain(
        access=tuple(p for p in plugins if p.access is not None),
        response=tuple(p for p in plugins if p.response is not None),
        log=tuple(p for p in plugins if p.log is not None),
        reads_body=any(getattr(p.instance, "reads_body", False) for p in plugins),
    )


def _bind(config, service, document_for) -> BoundPlugin:
    """The plugin instance for this config on this service, or a stand-in that refuses requests
    (500 PLUGIN_ERROR) when this instance cannot run it: failing closed beats skipping it."""
    plugin = catalogue().get(config.plugin)
    try:
        if plugin is None:
            raise PluginUnavailable(catalogue().describe_unknown(config.plugin))
        context = PluginContext(
            service=service.slug,
            service_prefix=service.prefix,
            tenant=config.tenant.slug if config.tenant_id else None,
            openapi_document=lambda: document_for(service),
        )
        instance = plugin(copy.deepcopy(config.config), context)
    except Exception as exc:
        logger.error(
            "plugin %s cannot run on %s; its requests answer PLUGIN_ERROR: %s",
            config.plugin,
            service.slug,
            exc,
            extra={"plugin": config.plugin, "service": service.slug},
        )
        return BoundPlugin(config.plugin, None, 1.0, access=_Unavailable(f"{type(exc).__name__}: {exc}"))
    return BoundPlugin(
        name=plugin.name,
        instance=instance,
        timeout=plugin.timeout_ms / 1000,
        access=getattr(instance, "access", None),
        response=getattr(instance, "response", None),
        log=getattr(instance, "log", None),
    )


class _Unavailable:
    """The access hook of a plugin that could not be set up: every request fails the same way."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, request) -> None:
        raise PluginUnavailable(self.reason)
