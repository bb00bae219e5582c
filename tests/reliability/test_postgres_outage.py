"""PostgreSQL stopped under a running gateway (issue: reliability): the data plane keeps
routing from its snapshot, readiness says so, the admin and the management API fail with
clean error pages, nothing is half-written, and the gateway recovers without a restart.

The cluster is a private one on a free port (never the shared server on 5432).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.live import GatewayProcess, wait_until

BASE_DIR = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "outage-admin-pass-123"
MONITORING_TOKEN = "outage-monitoring-token"
SETUP_TIMEOUT_SECONDS = 60

SEED = """
import json, django
django.setup()
from registry.models import Service, Target
from tenancy.models import User
from tenancy.tokens import tokens_for_user
staff = User.objects.create_user("outage-admin", email="outage-admin@example.com",
    password=%(password)r, is_staff=True, is_superuser=True, role="admin")
service = Service.objects.create(name="Sales", slug="sales", path_prefix="/api/v1/sales",
    auth_required=False, retries=0)
Target.objects.create(service=service, url=%(upstream)r)
print(json.dumps({"token": tokens_for_user(staff)["access"]}))
"""

ADD_SERVICE = """
import django
django.setup()
from registry.models import Service, Target
service = Service.objects.create(name=%(name)r, slug=%(slug)r, path_prefix="/api/v1/" + %(slug)r,
    auth_required=False)
Target.objects.create(service=service, url=%(upstream)r)
"""


def run_django(env: dict, code: str) -> str:
    """Run Django code in a child process against the private database; returns its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def service_rows(database_url: str, slug: str) -> int:
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return conn.execute("SELECT count(*) FROM registry_service WHERE slug = %s", [slug]).fetchone()[0]


def admin_session(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=10, trust_env=False)
    client.get("/admin/login/")
    login = client.post(
        "/admin/login/",
        headers={"Origin": base},
        data={
            "username": "outage-admin",
            "password": ADMIN_PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
            "next": "/admin/",
        },
    )
    assert login.status_code == 302 and login.headers["location"] == "/admin/", login.text[:500]
    return client


def assert_clean_error_page(response: httpx.Response) -> None:
    """The gateway's own 500 page: no traceback, no settings, no SQL."""
    assert response.status_code == 500, (response.status_code, response.text[:300])
    assert "text/html" in response.headers["content-type"]
    assert "Something went wrong" in response.text
    assert "If the database is unreachable" in response.text
    for leak in ("Traceback", "OperationalError", "psycopg", "SECRET_KEY", "DATABASES"):
        assert leak not in response.text


def test_postgres_stopped_routing_continues_admin_fails_cleanly_and_recovers(
    private_postgres, upstream, settings
):
    # Given: a migrated private database with a staff user and one service, and a gateway on it.
    database_url = private_postgres.create_database("gateway")
    gateway = GatewayProcess(
        extra_env={
            "DATABASE_URL": database_url,
            "REDIS_URL": "",
            "RATE_LIMIT_DEFAULT": "",
            "CELERY_BROKER_URL": "memory://",
            "METRICS_TOKEN": MONITORING_TOKEN,
        }
    )
    env = gateway.env
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT_SECONDS,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    token = json.loads(run_django(env, SEED % {"password": ADMIN_PASSWORD, "upstream": upstream.url}))[
        "token"
    ]
    staff = {"Authorization": f"Bearer {token}"}
    gateway.start()
    try:
        base = gateway.url
        assert httpx.get(f"{base}/api/v1/sales/x", timeout=5).status_code == 200
        admin = admin_session(base)
        assert admin.get("/admin/registry/service/").status_code == 200
        assert httpx.get(f"{base}/api/manage/services/", headers=staff, timeout=5).status_code == 200

        # When: PostgreSQL stops hard.
        private_postgres.stop("immediate")

        # Then: the data plane keeps routing from its snapshot.
        routed = [httpx.get(f"{base}/api/v1/sales/x", timeout=5) for _ in range(10)]
        assert [r.status_code for r in routed] == [200] * 10
        # And: readiness says why it is still ready (snapshot loaded, database unavailable).
        ready = httpx.get(f"{base}/health/ready", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["database"] == "unavailable"
        assert ready.json()["snapshot_loaded"] is True
        assert httpx.get(f"{base}/health/live", timeout=5).status_code == 200
        # (the detail is for staff or the monitoring token; only the token works without a database)
        monitoring = {"Authorization": f"Bearer {MONITORING_TOKEN}"}
        detailed = httpx.get(f"{base}/api/v1/health/detailed", headers=monitoring, timeout=5)
        assert detailed.status_code == 200
        assert detailed.json()["database"]["status"] == "unavailable"
        assert "sales" in detailed.json()["services"]

        # And: the admin answers the gateway's error page, not a traceback.
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as visitor:
            login_page = visitor.get("/admin/login/")
            assert login_page.status_code == 200  # the bare form needs no database
            attempt = visitor.post(
                "/admin/login/",
                headers={"Origin": base},
                data={
                    "username": "outage-admin",
                    "password": ADMIN_PASSWORD,
                    "csrfmiddlewaretoken": visitor.cookies["csrftoken"],
                    "next": "/admin/",
                },
            )
        assert_clean_error_page(attempt)
        assert_clean_error_page(admin.get("/admin/registry/service/"))

        # And: a write through the management API fails cleanly and writes nothing.
        create = httpx.post(
            f"{base}/api/manage/services/",
            headers=staff,
            timeout=10,
            json={
                "name": "Ghost",
                "slug": "ghost",
                "path_prefix": "/api/v1/ghost",
                "auth_required": False,
            },
        )
        assert 500 <= create.status_code < 600
        assert create.headers["content-type"].startswith("application/problem+json"), create.text[:300]
        assert "Traceback" not in create.text and "OperationalError" not in create.text

        # When: PostgreSQL comes back.
        private_postgres.start()

        # Then: nothing half-written, readiness and the admin recover, config flows again.
        assert service_rows(database_url, "ghost") == 0
        wait_until(
            lambda: httpx.get(f"{base}/health/ready", timeout=5).json()["database"] == "ok",
            10,
            interval=0.2,
            message="readiness to see the database again",
        )
        assert admin.get("/admin/registry/service/").status_code == 200
        run_django(env, ADD_SERVICE % {"name": "Orders", "slug": "orders", "upstream": upstream.url})
        started = time.monotonic()
        wait_until(
            lambda: httpx.get(f"{base}/api/v1/orders/x", timeout=5).status_code == 200,
            5,
            interval=0.1,
            message="a service added after recovery to become routable",
        )
        assert time.monotonic() - started < 5
        assert httpx.get(f"{base}/api/v1/sales/x", timeout=5).status_code == 200
        admin.close()
    finally:
        gateway.stop()
