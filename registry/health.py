"""Active health checks of targets (SPEC section 8), run by the Celery beat sweep.

Each due target gets an HTTP GET on its service's health path with a short timeout; the
result is stored (bounded history) and, when a target's health flips, saved on the target
so the config version moves and every data plane stops (or resumes) sending it traffic.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.db import transaction
from django.utils import timezone

from gateway_project.core.outbound import async_outbound_client
from gateway_project.core.tls import TlsFiles, upstream_ssl_context
from registry.apidocs.documents import refresh_due_documents
from registry.constants import HEALTH_HISTORY_PER_TARGET
from registry.models import Target, TargetHealthCheck

__all__ = ["CheckResult", "check_targets_now", "due_targets", "health_sweep"]

logger = logging.getLogger("gateway.health")

CHECK_TIMEOUT_SECONDS = 2.0
MAX_PARALLEL_CHECKS = 50
USER_AGENT = "gateway-health-check/1.0"


@dataclass(frozen=True)
class CheckResult:
    target_id: int
    ok: bool
    status_code: int | None
    latency_ms: float | None
    error: str


async def _probe(client: httpx.AsyncClient, gate: asyncio.Semaphore, target: Target) -> CheckResult:
    url = target.url.rstrip("/") + target.service.health_path
    async with gate:
        started = time.perf_counter()
        try:
            response = await client.get(url)
        except httpx.HTTPError as exc:
            return CheckResult(target.pk, False, None, None, f"{type(exc).__name__}: {exc}"[:300])
    latency = round((time.perf_counter() - started) * 1000, 2)
    ok = 200 <= response.status_code < 400
    return CheckResult(
        target.pk, ok, response.status_code, latency, "" if ok else f"HTTP {response.status_code}"
    )


async def _probe_all(targets: list[Target]) -> list[CheckResult]:
    """Probe every target, each through a client with its own TLS settings (as the proxy
    reaches it), at most MAX_PARALLEL_CHECKS at a time; results in the targets' order."""
    gate = asyncio.Semaphore(MAX_PARALLEL_CHECKS)
    by_tls: dict[object, list[int]] = {}
    results: list[CheckResult | None] = [None] * len(targets)
    for index, target in enumerate(targets):
        try:
            tls = upstream_ssl_context(TlsFiles.of(target))
        except (OSError, ssl.SSLError) as exc:
            results[index] = CheckResult(target.pk, False, None, None, f"TLS settings: {exc}"[:300])
            continue
        by_tls.setdefault(tls, []).append(index)

    async def probe_group(tls, indexes: list[int]) -> None:
        options = {"timeout": CHECK_TIMEOUT_SECONDS, "headers": {"User-Agent": USER_AGENT}}
        async with async_outbound_client(verify=tls, **options) as client:
            checks = await asyncio.gather(*(_probe(client, gate, targets[i]) for i in indexes))
        for index, check in zip(indexes, checks, strict=True):
            results[index] = check

    await asyncio.gather(*(probe_group(tls, indexes) for tls, indexes in by_tls.items()))
    return results


def due_targets(now=None) -> list[Target]:
    """Enabled targets of enabled services whose check interval has elapsed."""
    now = now or timezone.now()
    candidates = Target.objects.filter(enabled=True, service__enabled=True).select_related("service")
    return [
        target
        for target in candidates
        if target.last_checked_at is None
        or target.last_checked_at + timedelta(seconds=target.service.health_interval) <= now
    ]


def _record(targets: list[Target], results: list[CheckResult]) -> None:
    now = timezone.now()
    by_id = {target.pk: target for target in targets}
    TargetHealthCheck.objects.bulk_create(
        TargetHealthCheck(
            target_id=r.target_id,
            ok=r.ok,
            status_code=r.status_code,
            latency_ms=r.latency_ms,
            error=r.error,
        )
        for r in results
    )
    for result in results:
        target = by_id[result.target_id]
        if target.healthy != result.ok:
            logger.warning(
                "target %s is now %s",
                target.url,
                "healthy" if result.ok else "unhealthy",
                extra={"service": target.service.slug, "target": target.pk, "error": result.error},
            )
            with transaction.atomic():
                # save(): a health flip is a config change every data plane must see.
                target.healthy = result.ok
                target.last_checked_at = now
                target.save(update_fields=["healthy", "last_checked_at", "updated_at"])
        else:
            Target.objects.filter(pk=target.pk).update(last_checked_at=now)
        _trim_history(target.pk)


def _trim_history(target_id: int) -> None:
    keep = TargetHealthCheck.objects.filter(target_id=target_id).values_list("pk", flat=True)[
        HEALTH_HISTORY_PER_TARGET - 1 : HEALTH_HISTORY_PER_TARGET
    ]
    if keep:
        TargetHealthCheck.objects.filter(target_id=target_id, pk__lt=keep[0]).delete()


def check_targets_now(targets) -> list[CheckResult]:
    """Check these targets immediately (admin action, management API), due or not."""
    targets = list(targets.select_related("service") if hasattr(targets, "select_related") else targets)
    if not targets:
        return []
    results = asyncio.run(_probe_all(targets))
    _record(targets, results)
    return results


def health_sweep() -> list[CheckResult]:
    """One beat tick: check every target that is due, then refresh the API docs that are due."""
    results = check_targets_now(due_targets())
    try:
        refresh_due_documents()
    except Exception:  # the docs are a convenience: they must never stop the health checks
        logger.exception("API docs refresh failed")
    return results
