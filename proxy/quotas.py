"""Plan quotas (SPEC section 20): requests per calendar month (UTC), per tenant and optionally
per service, counted in the limiter's one Redis round trip next to the rate limits.

A quota is one more entry for the limiter's Lua script (algorithm `quota`): a counter that
admits while below the limit and is incremented only when every check admits, so N
instances sharing Redis admit exactly the quota and a refused request uses none of it. Its
key carries the tenant's {hash tag}, so on a Cluster it lives in the slot of the tenant's
other keys.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from proxy.metering import QUOTA_ALERT_PERCENTS, QuotaEvent
from proxy.snapshot import RatePolicyEntry, TenantEntry

__all__ = ["QUOTA", "Period", "QuotaBook", "month_of", "quota_key", "threshold_events"]

QUOTA = "quota"


@dataclass(frozen=True, slots=True)
class Period:
    """One quota period: a calendar month in UTC."""

    label: str
    starts_at: int
    resets_at: int


def month_of(epoch: float) -> Period:
    moment = datetime.fromtimestamp(epoch, UTC)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    following = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)
    return Period(f"{moment:%Y-%m}", int(start.timestamp()), int(following.timestamp()))


def quota_key(prefix: str, tenant: str, period: str, service: str = "") -> str:
    """The Redis counter of a tenant's quota (overall, or on one service) in one period."""
    base = f"{prefix}:quota:{{tenant:{tenant}}}"
    return f"{base}:{service}:{period}" if service else f"{base}:{period}"


class QuotaBook:
    """The quota entries and keys of a (tenant, service), built once per snapshot and period."""

    def __init__(self, fail_mode: str, clock=time.time) -> None:
        self.fail_mode = fail_mode
        self._clock = clock
        self._period = month_of(clock())
        self._snapshot = None
        self._cache: dict[tuple, tuple[tuple[str, RatePolicyEntry], ...]] = {}

    def keyed(self, snapshot, tenant: TenantEntry | None, service, prefix: str) -> tuple:
        """(Redis key, quota entry) pairs for this request; empty without a plan quota."""
        if tenant is None or tenant.quota is None:
            return ()
        now = self._clock()
        if snapshot is not self._snapshot or now >= self._period.resets_at:
            self._snapshot, self._period, self._cache = snapshot, month_of(now), {}
        cache_key = (tenant.slug, service.id, prefix)
        entries = self._cache.get(cache_key)
        if entries is None:
            entries = self._cache[cache_key] = self._build(tenant, service, prefix)
        return entries

    def _build(self, tenant: TenantEntry, service, prefix: str) -> tuple:
        terms, label = tenant.quota, self._period.label
        entries = []
        if terms.monthly is not None:
            entries.append((quota_key(prefix, tenant.slug, label), self._entry("quota", terms.monthly, None)))
        per_service = terms.service_quota(service.id)
        if per_service is not None:
            entry = self._entry(f"quota-{service.slug}", per_service, service.id)
            entries.append((quota_key(prefix, tenant.slug, label, service.slug), entry))
        return tuple(entries)

    def _entry(self, name: str, limit: int, service_id: int | None) -> RatePolicyEntry:
        period = self._period
        return RatePolicyEntry(
            name=name,
            scope="tenant",
            service_id=service_id,
            methods=frozenset(),
            role="",
            plan="",
            limit=limit,
            window_seconds=period.resets_at - period.starts_at,
            burst=0,
            algorithm=QUOTA,
            fail_mode=self.fail_mode,
            resets_at=period.resets_at,
        )

    @property
    def period(self) -> Period:
        return self._period


def threshold_events(checks, tenant: str, service: str, period: Period) -> list[QuotaEvent]:
    """The alerts this request triggers: it used the unit that reached 80 % or 100 %. The
    counter is exact, so exactly one request in the cluster sees each threshold."""
    events = []
    for check in checks:
        policy = check.policy
        if policy.algorithm != QUOTA or not check.ok:
            continue
        used = policy.limit - check.remaining
        for percent in QUOTA_ALERT_PERCENTS:
            if used == math.ceil(policy.limit * percent / 100):
                where = service if policy.service_id is not None else ""
                events.append(QuotaEvent(tenant, policy.name, where, percent, policy.limit, period.label))
    return events
