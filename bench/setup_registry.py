"""Prepare the benchmark's registry (run in the gateway's environment): services, a policy, a token.

Prints one JSON line: {"token": ..., "quota_token": ...}; the second is a user of a tenant
whose plan has a monthly quota (never reached), to measure what the quota check costs.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from registry.models import RatePolicy, Service, Target
    from tenancy.constants import MONTHLY_QUOTA_RANGE
    from tenancy.models import Plan, Subscription, Tenant, User

    call_command("migrate", verbosity=0)
    upstream = sys.argv[1]
    for slug, auth in (("open", False), ("bench", True), ("nolimit", True), ("cached", True)):
        service, _ = Service.objects.update_or_create(
            slug=slug,
            defaults={
                "name": slug.title(),
                "path_prefix": f"/api/v1/{slug}",
                "auth_required": auth,
                "retries": 0,
                "cache_ttl": 300 if slug == "cached" else 0,
            },
        )
        Target.objects.update_or_create(service=service, url=upstream, defaults={"weight": 100})
    bench = Service.objects.get(slug="bench")
    RatePolicy.objects.update_or_create(
        name="bench-never-rejects",
        defaults={
            "scope": "user",
            "service": bench,
            "limit": 1_000_000_000,
            "window_seconds": 60,
            "algorithm": "gcra",
            "burst": 1_000_000_000,
        },
    )
    tenant, _ = Tenant.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    Subscription.objects.get_or_create(
        tenant=tenant, defaults={"current_period_end": timezone.now() + timedelta(days=30)}
    )
    user, _ = User.objects.get_or_create(
        username="bench", defaults={"tenant": tenant, "role": "staff", "is_staff": True}
    )
    plan, _ = Plan.objects.update_or_create(
        name="bench-quota", defaults={"monthly_request_quota": MONTHLY_QUOTA_RANGE[1]}
    )
    quota_tenant, _ = Tenant.objects.get_or_create(slug="bench-quota", defaults={"name": "Bench quota"})
    Subscription.objects.update_or_create(
        tenant=quota_tenant,
        defaults={"current_period_end": timezone.now() + timedelta(days=30), "plan": plan},
    )
    quota_user, _ = User.objects.get_or_create(
        username="bench-quota", defaults={"tenant": quota_tenant, "role": "staff", "is_staff": True}
    )
    from pathlib import Path

    from bench.data_plane import write_data_plane_files

    write_data_plane_files(Path(os.environ["GATEWAY_VAR_DIR"]))
    print(json.dumps({"token": _long_lived(user), "quota_token": _long_lived(quota_user)}))


def _long_lived(user) -> str:
    from tenancy.tokens import GatewayAccessToken, tokens_for_user

    token = GatewayAccessToken(tokens_for_user(user)["access"])
    token.set_exp(lifetime=timedelta(hours=6))
    return str(token)


if __name__ == "__main__":
    main()
