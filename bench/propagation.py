"""Config propagation: a Service saved through the ORM (as the admin does) and the time until
another gateway instance routes it. Run in the gateways' environment; prints JSON."""

from __future__ import annotations

import json
import os
import sys
import time

import django
import httpx

ATTEMPTS = 5
TIMEOUT_SECONDS = 10


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    django.setup()
    from registry.models import Service, Target

    gateway, upstream = sys.argv[1], sys.argv[2]
    timings = []
    timeouts = 0
    with httpx.Client() as client:
        for attempt in range(ATTEMPTS):
            slug = f"prop-{os.getpid()}-{attempt}"
            started = time.perf_counter()
            service = Service.objects.create(
                name=slug, slug=slug, path_prefix=f"/api/v1/{slug}", auth_required=False
            )
            Target.objects.create(service=service, url=upstream)
            while client.get(f"{gateway}/api/v1/{slug}/x").status_code != 200:
                if time.perf_counter() - started > TIMEOUT_SECONDS:
                    timeouts += 1  # reported, and its sample is the timeout: never hidden
                    break
                time.sleep(0.002)
            timings.append((time.perf_counter() - started) * 1000)
            service.delete()
            time.sleep(0.2)
    timings.sort()
    print(
        json.dumps(
            {
                "samples_ms": [round(t, 1) for t in timings],
                "median_ms": round(timings[len(timings) // 2], 1),
                "max_ms": round(timings[-1], 1),
                "timeouts": timeouts,
            }
        )
    )


if __name__ == "__main__":
    main()
