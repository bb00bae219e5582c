"""Grow a registry to SPEC 23's sizes with bulk inserts (no signals, one version bump).

Used by the scale bench (`python -m bench.scale`) and by the scale tests at a smaller
size. Every object it makes has a `scale-` slug, so it can be emptied again without
touching anything else; API-key secrets are derived from the key's number, so a client
can present key N without the bench keeping 100,000 secrets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["ScaleSize", "api_key_secret", "empty_scale_registry", "grow_registry"]

BATCH = 2_000
SLUG = "scale-"
VERSIONED_EVERY = 10  # one service in ten also serves /api/v2/...


@dataclass(frozen=True)
class ScaleSize:
    services: int
    tenants: int
    api_keys: int

    def __str__(self) -> str:
        return f"{self.services:,} services / {self.tenants:,} tenants / {self.api_keys:,} API keys"


def api_key_secret(number: int) -> str:
    return f"gwk_scale{number:06d}_{hashlib.sha256(f'scale-key-{number}'.encode()).hexdigest()[:32]}"


def service_slug(number: int) -> str:
    return f"{SLUG}s{number}"


def tenant_slug(number: int) -> str:
    return f"{SLUG}t{number}"


def grow_registry(size: ScaleSize, upstream: str) -> None:
    """Insert the services (one target each), tenants (with subscriptions) and keys."""
    from registry.config_version import bump_config_version

    _services(size.services, upstream)
    tenants = _tenants(size.tenants)
    _api_keys(size.api_keys, tenants)
    bump_config_version()  # bulk inserts send no signals: one bump tells every instance


def _services(count: int, upstream: str) -> None:
    from registry.models import Service, ServiceVersion, Target

    for start in range(0, count, BATCH):
        numbers = range(start, min(start + BATCH, count))
        services = Service.objects.bulk_create(
            Service(
                name=f"Scale service {n}",
                slug=service_slug(n),
                path_prefix=f"/api/v1/{service_slug(n)}",
                retries=0,
            )
            for n in numbers
        )
        Target.objects.bulk_create(Target(service=s, url=upstream) for s in services)
        ServiceVersion.objects.bulk_create(
            ServiceVersion(service=s, version="2")
            for n, s in zip(numbers, services, strict=True)
            if n % VERSIONED_EVERY == 0
        )


def _tenants(count: int) -> list:
    from django.utils import timezone

    from tenancy.models import Subscription, Tenant

    period_end = timezone.now() + timedelta(days=365)
    made = []
    for start in range(0, count, BATCH):
        tenants = Tenant.objects.bulk_create(
            Tenant(name=f"Scale tenant {n}", slug=tenant_slug(n))
            for n in range(start, min(start + BATCH, count))
        )
        Subscription.objects.bulk_create(
            Subscription(tenant=t, current_period_end=period_end) for t in tenants
        )
        made.extend(tenants)
    return made


def _api_keys(count: int, tenants: list) -> None:
    from registry.models import ApiKey, hash_api_key

    for start in range(0, count, BATCH):
        ApiKey.objects.bulk_create(
            ApiKey(
                tenant=tenants[n % len(tenants)],
                name=f"scale key {n}",
                prefix=api_key_secret(n)[:15],
                key_hash=hash_api_key(api_key_secret(n)),
                scopes=["read", "write"],
            )
            for n in range(start, min(start + BATCH, count))
        )


def empty_scale_registry() -> None:
    """Remove everything `grow_registry` made, with raw deletes (no signals, no cascade walk)."""
    from registry.config_version import bump_config_version
    from registry.models import ApiKey, Service, ServiceVersion, Target
    from tenancy.models import AuditEvent, Subscription, Tenant

    AuditEvent.objects.filter(tenant__slug__startswith=SLUG).update(tenant=None)  # the trail stays
    for queryset in (
        ApiKey.objects.filter(tenant__slug__startswith=SLUG),
        Subscription.objects.filter(tenant__slug__startswith=SLUG),
        Target.objects.filter(service__slug__startswith=SLUG),
        ServiceVersion.objects.filter(service__slug__startswith=SLUG),
        Service.objects.filter(slug__startswith=SLUG),
        Tenant.objects.filter(slug__startswith=SLUG),
    ):
        queryset._raw_delete(queryset.db)
    bump_config_version()
