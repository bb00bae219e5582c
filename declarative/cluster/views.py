"""/api/manage/cluster/config and /api/manage/cluster/config/version, for data planes only.

Authenticated with `Authorization: Bearer <GATEWAY_CLUSTER_TOKEN>`, served only with
GATEWAY_ROLE=control_plane (404 elsewhere). The version endpoint is a long poll: it answers
as soon as a version newer than `after` is committed (checked every LONG_POLL_CHECK_SECONDS),
else after LONG_POLL_SECONDS with the database's version; so a change reaches every data
plane within a fraction of a second without any of them polling often.
"""

from __future__ import annotations

import asyncio
import hmac
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from declarative.cluster.reports import data_plane_config, record_data_plane
from declarative.data_plane import constants
from gateway_project.core.clientip import client_ip
from gateway_project.core.gateway_role import GatewayRole
from gateway_project.web.problems import problem_response
from proxy.runtime import active_runtime
from registry.config_version import current_config_version

__all__ = ["cluster_config", "cluster_config_version"]

_NAME_MAX_LENGTH = 100


def _refusal(request: HttpRequest) -> JsonResponse | None:
    """404 unless this is a control plane; 401 without its cluster token."""
    if settings.GATEWAY_ROLE != GatewayRole.CONTROL_PLANE:
        return problem_response(request, "NOT_FOUND", "Only a control plane serves data planes.")
    expected = f"Bearer {settings.GATEWAY_CLUSTER_TOKEN}".encode()
    if not hmac.compare_digest(request.META.get("HTTP_AUTHORIZATION", "").encode(), expected):
        return problem_response(request, "AUTH_ERROR", "Data planes authenticate with the cluster token.")
    return None


def _reported(request: HttpRequest) -> tuple[str, int, int] | None:
    """(data plane name, newest version it has, version it serves), None when malformed."""
    name = request.GET.get("name", "").strip()
    try:
        after = int(request.GET.get("after", "-1"))
        serving = int(request.GET.get("serving", after))
    except ValueError:
        return None
    if not name or len(name) > _NAME_MAX_LENGTH:
        return None
    return name, after, serving


@never_cache
@require_GET
def cluster_config(request: HttpRequest) -> JsonResponse:
    """The data-plane config: `{"version", "document", "jwks"}`."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    return JsonResponse(data_plane_config(), json_dumps_params={"separators": (",", ":")})


@never_cache
@require_GET
async def cluster_config_version(request: HttpRequest) -> JsonResponse:
    """`{"version": N}` once N differs from `after` (or after the long-poll window)."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    reported = _reported(request)
    if reported is None:
        return problem_response(
            request,
            "INVALID_REQUEST",
            f"Give name (1-{_NAME_MAX_LENGTH} characters), after and serving (integers).",
        )
    name, after, serving = reported
    await sync_to_async(_closing(record_data_plane))(name, client_ip(request), serving)
    return JsonResponse({"version": await _next_version(after)})


async def _next_version(after: int) -> int:
    """The version to announce: this instance's runtime tells the moment one is committed
    (pub/sub, or its database poll), so waiting costs no query; at the end of the window the
    database's own version is the answer (it may have moved back: a restored database)."""
    deadline = time.monotonic() + constants.LONG_POLL_SECONDS
    while time.monotonic() < deadline:
        seen = _version_seen_by_runtime()
        if seen is None:
            break  # no data plane runtime here: ask the database
        if seen > after:
            return seen
        await asyncio.sleep(constants.LONG_POLL_CHECK_SECONDS)
    return await sync_to_async(_closing(current_config_version))()


def _version_seen_by_runtime() -> int | None:
    """None without a running data-plane runtime, or once it drains (the server is stopping:
    answering now lets it stop without waiting out every long poll)."""
    runtime = active_runtime()
    if runtime is None or not runtime.ready or runtime.draining:
        return None
    return max(runtime.watcher.status.newest_version, runtime.snapshot.version)


def _closing(function):
    """Run `function` and close the thread's connection: a long poll is cancelled when its
    data plane goes away, before Django would close the request's connection itself."""

    def call(*args):
        try:
            return function(*args)
        finally:
            connection.close()

    return call
