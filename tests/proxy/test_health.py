"""Health sweeps, panic mode and the health endpoints."""

import os
import subprocess
import sys

import httpx
import pytest

from registry.health import check_targets_now, health_sweep
from registry.models import Target, TargetHealthCheck
from tests.live import RecordingUpstream, database_url_for_subprocess, wait_until


def test_a_stopped_target_is_marked_unhealthy_gets_no_traffic_and_recovers(
    gateway, make_service, upstream, second_upstream
):
    service = make_service("sales", targets=[upstream.url, second_upstream.url])
    gateway.sync()
    port = second_upstream.port
    second_upstream.stop()
    results = {r.target_id: r for r in health_sweep()}
    down = service.targets.get(url=second_upstream.url)
    assert results[down.pk].ok is False
    down.refresh_from_db()
    assert down.healthy is False
    gateway.sync()
    for _ in range(6):
        assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200
    assert len(upstream.hits("/x")) == 6
    # The same port comes back: the next check marks it healthy and traffic resumes.
    revived = RecordingUpstream().start(port=port)
    try:
        check_targets_now(Target.objects.filter(pk=down.pk))
        down.refresh_from_db()
        assert down.healthy is True
        gateway.sync()
        for _ in range(6):
            httpx.get(f"{gateway.url}/api/v1/sales/y")
        assert len(revived.hits("/y")) == 3
    finally:
        revived.stop()


def test_panic_mode_when_every_target_fails_its_check(gateway, make_service, upstream):
    make_service("sales", targets=[upstream.url], health_path="/status/503")
    health_sweep()
    assert Target.objects.get().healthy is False
    gateway.sync()
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200


def test_only_due_targets_are_checked_and_history_is_bounded(
    transactional_db, make_service, upstream, settings
):
    from registry.constants import HEALTH_HISTORY_PER_TARGET

    make_service("sales", targets=[upstream.url], health_interval=3600)
    assert len(health_sweep()) == 1
    assert health_sweep() == []  # checked a moment ago, not due for an hour
    target = Target.objects.get()
    for _ in range(HEALTH_HISTORY_PER_TARGET + 5):
        check_targets_now(Target.objects.filter(pk=target.pk))
    assert TargetHealthCheck.objects.filter(target=target).count() == HEALTH_HISTORY_PER_TARGET


def test_health_checks_use_the_service_health_path(transactional_db, make_service, upstream):
    make_service("sales", targets=[upstream.url], health_path="/healthz")
    health_sweep()
    assert [r.path for r in upstream.hits()] == ["/healthz"]
    assert upstream.hits()[0].headers["user-agent"].startswith("gateway-health-check")


@pytest.mark.redis
def test_the_sweep_runs_on_a_real_celery_worker(
    redis_url, transactional_db, make_service, upstream, settings, monkeypatch
):
    from celery import Celery

    from registry.models import Target
    from tests.live import free_port

    stopped = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    make_service("sales", targets=[upstream.url, stopped])
    broker = redis_url.rsplit("/", 1)[0] + "/14"
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="gateway_project.settings_test",
        CELERY_BROKER_URL=broker,
        DATABASE_URL=database_url_for_subprocess(),
        GATEWAY_VAR_DIR=str(settings.VAR_DIR),
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "gateway_project",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
    )
    try:
        monkeypatch.setenv("CELERY_BROKER_URL", broker)  # Celery prefers the variable to broker=
        sender = Celery(broker=broker, set_as_current=False)  # keep the eager app current
        sender.send_task("registry.tasks.health_sweep_task")

        def swept() -> bool:
            assert worker.poll() is None, "the worker died"
            return TargetHealthCheck.objects.count() >= 2

        wait_until(swept, 30, interval=0.2, message="the worker to run the sweep")
        # Then: the live target passed, the stopped one failed and is marked unhealthy.
        results = {check.target.url: check.ok for check in TargetHealthCheck.objects.all()}
        assert results == {upstream.url: True, stopped: False}
        assert {t.url: t.healthy for t in Target.objects.all()} == {upstream.url: True, stopped: False}
    finally:
        worker.terminate()
        worker.wait(15)


# --- endpoints --------------------------------------------------------------------------


@pytest.fixture
def staff_token(transactional_db) -> dict[str, str]:
    """A staff user's management-API token header."""
    from rest_framework.authtoken.models import Token

    from tenancy.models import User

    staff = User.objects.create_user("health-staff", password="staff-pass-123", is_staff=True)
    return {"Authorization": f"Token {Token.objects.create(user=staff).key}"}


def test_health_endpoints_answer_from_the_last_sweep(gateway, make_service, upstream, staff_token):
    make_service("sales", targets=[upstream.url])
    make_service("orders", targets=[{"url": upstream.url, "healthy": False}])
    gateway.sync()
    upstream.clear()
    # Anonymous callers learn each enabled service's status and nothing more.
    public = httpx.get(f"{gateway.url}/health").json()
    assert public["status"] == "degraded" and public["config_stale"] is False
    assert public["services"] == {"orders": {"status": "unhealthy"}, "sales": {"status": "healthy"}}
    health = httpx.get(f"{gateway.url}/health", headers=staff_token).json()
    assert set(health) >= {"status", "version", "timestamp", "services", "redis", "config_stale"}
    assert health["services"]["sales"]["status"] == "healthy"
    assert health["services"]["orders"]["status"] == "unhealthy"
    assert health["status"] == "degraded"
    same = httpx.get(f"{gateway.url}/api/v1/health", headers=staff_token).json()
    assert same["services"] == health["services"]
    assert upstream.hits() == []  # nothing was called inline
    assert httpx.get(f"{gateway.url}/health/live").json() == {"status": "alive"}
    ready = httpx.get(f"{gateway.url}/health/ready")
    assert ready.status_code == 200 and ready.json()["snapshot_loaded"] is True
    assert httpx.get(f"{gateway.url}/health/startup").status_code == 200
    status = httpx.get(f"{gateway.url}/api/v1/status").json()
    assert (status["status"], status["config_stale"]) == ("degraded", False)  # the same as /health
    assert status["config_version"] == gateway.runtime.snapshot.version
    assert status["services"] == 2


def test_detailed_health_shows_breakers_to_staff_and_urls_to_staff_users_only(
    gateway, make_service, staff_token, settings
):
    from tests.live import free_port

    make_service(
        "sales",
        targets=[f"http://127.0.0.1:{free_port()}"],
        retries=0,
        breaker_failure_threshold=2,
        breaker_minimum_throughput=2,
    )
    gateway.sync()
    for _ in range(2):
        httpx.get(f"{gateway.url}/api/v1/sales/x")
    anonymous = httpx.get(f"{gateway.url}/api/v1/health/detailed")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    detailed = httpx.get(f"{gateway.url}/api/v1/health/detailed", headers=staff_token).json()
    target = detailed["services"]["sales"]["targets_detail"][0]
    assert target["circuit_breaker"]["state"] == "open"
    assert target["circuit_breaker"]["failure_count"] == 2
    assert 0 < target["circuit_breaker"]["time_until_retry"] <= 30
    assert target["url"].startswith("http://127.0.0.1:")
    assert detailed["database"]["status"] == "ok"
    assert detailed["config_version"]["serving"] == detailed["config_version"]["database"]
    # The monitoring token reads the same detail, without the target URLs.
    settings.METRICS_TOKEN = "scrape-secret"
    scrape = {"Authorization": "Bearer scrape-secret"}
    monitored = httpx.get(f"{gateway.url}/api/v1/health/detailed", headers=scrape).json()
    assert "url" not in monitored["services"]["sales"]["targets_detail"][0]
    assert monitored["services"]["sales"]["status"] == detailed["services"]["sales"]["status"]


def test_ready_is_503_when_redis_is_configured_but_down(db, settings, client):
    from tests.live import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["redis"] == "unavailable"
    assert client.get("/health/live").status_code == 200


def test_startup_probe_fails_until_the_first_snapshot_is_loaded(client, monkeypatch, db):
    import types

    from proxy import runtime as runtime_module
    from proxy.snapshot import Snapshot

    # Given: a data plane that has not compiled its first snapshot yet.
    starting = types.SimpleNamespace(snapshot=Snapshot(version=-1))
    monkeypatch.setattr(runtime_module, "_active", starting)
    # Then: Kubernetes sees a failing startup probe (any status outside 200-399).
    response = client.get("/health/startup")
    assert (response.status_code, response.json()) == (503, {"status": "starting"})
    assert "no-cache" in response["Cache-Control"]
    # When: the snapshot is loaded, the probe passes.
    starting.snapshot = Snapshot(version=1, loaded=True)
    response = client.get("/health/startup")
    assert (response.status_code, response.json()) == (200, {"status": "started"})
