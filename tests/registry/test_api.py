"""The registry's management API as developers script it: services, targets, policies, keys,
breakers, health and config; plus what every /api/manage/ endpoint shares (auth, HTML)."""

from __future__ import annotations

import json
import sys
import types
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from gateway_project.core import breaker_board
from proxy.breaker import BreakerRegistry, BreakerSettings
from registry.config_version import current_config_version
from registry.models import ApiKey, RatePolicy, Service, Target, TargetHealthCheck, hash_api_key
from tenancy.tokens import tokens_for_user
from tests.control_plane import assert_problem

MANAGE = "/api/manage"
ROOT_ENTRIES = (
    "services", "targets", "service-versions", "rate-policies", "api-keys", "circuit-breakers",
    "health", "config",
    "tenants", "subscriptions", "identity-providers", "audit-events", "notification-rules", "alerts",
    "plugins", "usage", "plans",
    "data-planes",
)  # fmt: skip
METADATA_URL = "http://169.254.169.254/latest/meta-data"


def service_body(**overrides) -> dict:
    body = {
        "name": "Sales",
        "slug": "sales",
        "path_prefix": "/api/v1/sales",
        "targets": [
            {"url": "http://127.0.0.1:9001", "weight": 100},
            {"url": "http://127.0.0.1:9002", "weight": 50},
        ],
    }
    return {**body, **overrides}


def log_of(obj) -> list[str]:
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
    ).order_by("pk")
    return [entry.get_change_message() for entry in entries]


@pytest.fixture
def fresh_breakers(monkeypatch):
    """One instance's breakers, read back through the board as that instance publishes them."""
    registry = BreakerRegistry()

    def read_board() -> breaker_board.Board:
        return breaker_board.Board([json.loads(breaker_board.encode("test-instance", registry.noteworthy()))])

    monkeypatch.setattr(breaker_board, "read_board", read_board)
    return registry


# --- Services with nested targets -------------------------------------------------------


def test_staff_create_a_service_with_its_targets_in_one_request(staff_client, staff_user):
    response = staff_client.post(f"{MANAGE}/services/", service_body(), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "sales"
    assert [(t["url"], t["weight"]) for t in body["targets"]] == [
        ("http://127.0.0.1:9001", 100),
        ("http://127.0.0.1:9002", 50),
    ]
    assert all(isinstance(t["id"], int) and t["healthy"] for t in body["targets"])
    service = Service.objects.get(slug="sales")
    assert sorted(service.targets.values_list("url", flat=True)) == [
        "http://127.0.0.1:9001",
        "http://127.0.0.1:9002",
    ]
    assert log_of(service) == ["Added through the API."]
    assert LogEntry.objects.get(object_id=str(service.pk)).user == staff_user


def test_the_model_normalises_what_the_api_stores(staff_client):
    body = service_body(
        path_prefix="/api/v1/sales/",
        allowed_methods=["get", "post", "GET"],
        targets=[{"url": "http://127.0.0.1:9001/"}],
    )

    response = staff_client.post(f"{MANAGE}/services/", body, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["path_prefix"] == "/api/v1/sales"
    assert response.json()["allowed_methods"] == ["GET", "POST"]
    assert response.json()["targets"][0]["url"] == "http://127.0.0.1:9001"
    assert Service.objects.get().path_prefix == "/api/v1/sales"


def test_services_are_listed_paginated_searchable_and_filterable(staff_client):
    Service.objects.create(name="Sales", slug="sales", path_prefix="/api/v1/sales")
    Service.objects.create(name="Inventory", slug="inventory", path_prefix="/api/v1/inventory")
    Service.objects.create(name="Orders", slug="orders", path_prefix="/api/v1/orders", enabled=False)

    page = staff_client.get(f"{MANAGE}/services/", {"limit": 2}).json()
    searched = staff_client.get(f"{MANAGE}/services/", {"search": "invent"}).json()
    disabled = staff_client.get(f"{MANAGE}/services/", {"enabled": "false"}).json()

    assert page["count"] == 3 and len(page["results"]) == 2 and "offset=2" in page["next"]
    assert [s["slug"] for s in searched["results"]] == ["inventory"]
    assert [s["slug"] for s in disabled["results"]] == ["orders"]


def test_a_bad_filter_value_is_a_400_naming_the_parameter(staff_client, service):
    response = staff_client.get(f"{MANAGE}/services/", {"enabled": "maybe"})

    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert "enabled" in body["errors"]


def test_put_replaces_the_targets_matching_them_by_id(staff_client, service):
    kept = Target.objects.create(service=service, url="http://127.0.0.1:9001", weight=10)
    dropped = Target.objects.create(service=service, url="http://127.0.0.1:9002")
    body = service_body(
        name="Sales v2",
        targets=[
            {"id": kept.pk, "url": "http://127.0.0.1:9001", "weight": 70},
            {"url": "http://127.0.0.1:9003"},
        ],
    )

    response = staff_client.put(f"{MANAGE}/services/{service.pk}/", body, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Sales v2"
    assert [(t["id"], t["weight"]) for t in response.json()["targets"]][0] == (kept.pk, 70)
    urls = sorted(service.targets.values_list("url", flat=True))
    assert urls == ["http://127.0.0.1:9001", "http://127.0.0.1:9003"]
    assert not Target.objects.filter(pk=dropped.pk).exists()
    assert Target.objects.get(pk=kept.pk).weight == 70


def test_put_without_targets_is_refused_rather_than_guessed(staff_client, target):
    body = service_body()
    del body["targets"]

    response = staff_client.put(f"{MANAGE}/services/{target.service_id}/", body, format="json")

    assert "targets" in assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert Target.objects.filter(pk=target.pk).exists()


def test_patch_without_targets_keeps_them(staff_client, target):
    response = staff_client.patch(
        f"{MANAGE}/services/{target.service_id}/", {"read_timeout": 5}, format="json"
    )

    assert response.status_code == 200, response.content
    assert [t["id"] for t in response.json()["targets"]] == [target.pk]
    assert Service.objects.get().read_timeout == 5


def test_patch_with_targets_updates_one_by_id_and_drops_the_others(staff_client, service, target):
    other = Target.objects.create(service=service, url="http://127.0.0.1:9002")

    response = staff_client.patch(
        f"{MANAGE}/services/{service.pk}/",
        {"targets": [{"id": target.pk, "enabled": False}]},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert [(t["id"], t["url"], t["enabled"]) for t in response.json()["targets"]] == [
        (target.pk, "http://127.0.0.1:9001", False)
    ]
    assert not Target.objects.filter(pk=other.pk).exists()


def test_delete_a_service_removes_its_targets(staff_client, target):
    response = staff_client.delete(f"{MANAGE}/services/{target.service_id}/")

    assert response.status_code == 204
    assert not Service.objects.exists() and not Target.objects.exists()


@pytest.mark.parametrize("prefix", ["/api/v1/auth", "/api/v1/health/deep", "/api/v1/alerts/x"])
def test_a_reserved_prefix_is_a_400_naming_path_prefix(staff_client, prefix):
    response = staff_client.post(f"{MANAGE}/services/", service_body(path_prefix=prefix), format="json")

    body = assert_problem(response, 400, "VALIDATION_ERROR")
    assert "served by the gateway itself" in body["errors"]["path_prefix"][0]
    assert not Service.objects.exists() and not Target.objects.exists()


def test_a_metadata_target_saves_neither_the_service_nor_any_target(staff_client):
    body = service_body(targets=[{"url": "http://127.0.0.1:9001"}, {"url": METADATA_URL}])

    response = staff_client.post(f"{MANAGE}/services/", body, format="json")

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert list(errors["targets"]) == ["1"]  # by position, only the failing target
    assert "denied network" in errors["targets"]["1"]["url"][0]
    assert not Service.objects.exists() and not Target.objects.exists()


def test_a_bad_target_in_an_update_leaves_service_and_targets_untouched(staff_client, target):
    body = service_body(
        name="Renamed",
        targets=[
            {"id": target.pk, "url": "http://127.0.0.1:9001", "weight": 1},
            {"url": METADATA_URL},
        ],
    )

    response = staff_client.put(f"{MANAGE}/services/{target.service_id}/", body, format="json")

    assert_problem(response, 400, "VALIDATION_ERROR")
    assert Service.objects.get().name == "Sales"
    assert list(Target.objects.values_list("pk", "weight")) == [(target.pk, 100)]


def test_service_and_target_errors_are_reported_together(staff_client):
    twice = [{"url": "http://127.0.0.1:9001"}, {"url": "http://127.0.0.1:9001"}]
    body = service_body(upstream_path="no-slash", targets=twice)

    response = staff_client.post(f"{MANAGE}/services/", body, format="json")

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert errors["upstream_path"] == ["Start the rewrite with '/'."]
    assert errors["targets"] == {"1": {"url": ["This URL is listed twice."]}}
    assert not Service.objects.exists()


def test_field_errors_of_a_nested_target_name_each_field(staff_client):
    body = service_body(targets=[{"url": "ftp://127.0.0.1/x", "weight": 2000}])

    response = staff_client.post(f"{MANAGE}/services/", body, format="json")

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert errors["targets"]["0"]["url"] == ["Upstream URLs must use http or https."]
    assert "weight" in errors["targets"]["0"]
    assert not Service.objects.exists()


def test_model_clean_rules_come_back_as_field_errors(staff_client):
    response = staff_client.post(
        f"{MANAGE}/services/", service_body(upstream_path="no-slash", targets=[]), format="json"
    )

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert errors == {"upstream_path": ["Start the rewrite with '/'."]}


def test_an_unknown_method_is_a_400_naming_allowed_methods(staff_client):
    response = staff_client.post(
        f"{MANAGE}/services/", service_body(allowed_methods=["GET", "FETCH"]), format="json"
    )

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert errors["allowed_methods"] == ["Unknown HTTP methods: FETCH."]
    assert not Service.objects.exists()


def test_the_same_target_url_twice_is_refused(staff_client):
    body = service_body(targets=[{"url": "http://127.0.0.1:9001"}, {"url": "http://127.0.0.1:9001/"}])

    response = staff_client.post(f"{MANAGE}/services/", body, format="json")

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert errors["targets"]["1"]["url"] == ["This URL is listed twice."]


def test_a_target_of_another_service_cannot_be_adopted(staff_client, service):
    other = Service.objects.create(name="Orders", slug="orders", path_prefix="/api/v1/orders")
    foreign = Target.objects.create(service=other, url="http://127.0.0.1:9009")

    response = staff_client.patch(
        f"{MANAGE}/services/{service.pk}/",
        {"targets": [{"id": foreign.pk, "url": "http://127.0.0.1:9009"}]},
        format="json",
    )

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert "id" in errors["targets"]["0"]
    assert Target.objects.get(pk=foreign.pk).service == other


def test_a_duplicate_slug_is_a_400(staff_client, service):
    response = staff_client.post(f"{MANAGE}/services/", service_body(name="Sales 2"), format="json")

    assert "slug" in assert_problem(response, 400, "VALIDATION_ERROR")["errors"]


# --- Targets ----------------------------------------------------------------------------


def test_targets_crud_and_filter_by_service(staff_client, service):
    orders = Service.objects.create(name="Orders", slug="orders", path_prefix="/api/v1/orders")
    Target.objects.create(service=orders, url="http://127.0.0.1:9100")

    created = staff_client.post(
        f"{MANAGE}/targets/",
        {"service": "sales", "url": "http://127.0.0.1:9001", "weight": 5},
        format="json",
    )
    listed = staff_client.get(f"{MANAGE}/targets/", {"service": "sales"})
    target_id = created.json()["id"]
    patched = staff_client.patch(f"{MANAGE}/targets/{target_id}/", {"weight": 0}, format="json")
    deleted = staff_client.delete(f"{MANAGE}/targets/{target_id}/")

    assert created.status_code == 201, created.content
    assert created.json()["service"] == "sales"
    assert [t["url"] for t in listed.json()["results"]] == ["http://127.0.0.1:9001"]
    assert patched.status_code == 200 and patched.json()["weight"] == 0
    assert deleted.status_code == 204
    assert list(Target.objects.values_list("url", flat=True)) == ["http://127.0.0.1:9100"]


def test_a_target_weight_above_1000_is_a_400(staff_client, target):
    response = staff_client.patch(f"{MANAGE}/targets/{target.pk}/", {"weight": 1001}, format="json")

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert "weight" in errors
    assert Target.objects.get(pk=target.pk).weight == 100


def test_a_target_url_twice_for_one_service_is_a_400(staff_client, target):
    response = staff_client.post(f"{MANAGE}/targets/", {"service": "sales", "url": target.url}, format="json")

    assert_problem(response, 400, "VALIDATION_ERROR")
    assert Target.objects.count() == 1


def test_a_metadata_target_url_is_refused_on_its_own_endpoint_too(staff_client, service):
    response = staff_client.post(
        f"{MANAGE}/targets/", {"service": "sales", "url": "http://[fe80::1]:80"}, format="json"
    )

    assert "url" in assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert not Target.objects.exists()


# --- Rate policies ----------------------------------------------------------------------


def test_rate_policies_crud(staff_client, service):
    created = staff_client.post(
        f"{MANAGE}/rate-policies/",
        {"name": "sales-minute", "scope": "tenant", "service": "sales", "methods": ["post"],
         "limit": 300, "window_seconds": 60},
        format="json",
    )  # fmt: skip
    policy_id = created.json()["id"]
    listed = staff_client.get(f"{MANAGE}/rate-policies/", {"scope": "tenant"})
    patched = staff_client.patch(
        f"{MANAGE}/rate-policies/{policy_id}/", {"service": None, "limit": 10}, format="json"
    )
    deleted = staff_client.delete(f"{MANAGE}/rate-policies/{policy_id}/")

    assert created.status_code == 201, created.content
    assert created.json()["methods"] == ["POST"]
    assert [p["name"] for p in listed.json()["results"]] == ["sales-minute"]
    assert patched.json()["service"] is None and patched.json()["limit"] == 10
    assert deleted.status_code == 204 and not RatePolicy.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"burst": 5}, "burst"),  # Model.clean(): burst is for GCRA only
        ({"limit": 0}, "limit"),
        ({"window_seconds": 40 * 86400}, "window_seconds"),
        ({"name": "Has Spaces"}, "name"),
        ({"methods": ["TRACE"]}, "methods"),
        ({"scope": "planet"}, "scope"),
    ],
)
def test_bad_rate_policies_are_400s_naming_the_field(staff_client, change, field):
    body = {"name": "p", "scope": "user", "limit": 5, "window_seconds": 60, **change}

    response = staff_client.post(f"{MANAGE}/rate-policies/", body, format="json")

    assert field in assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert not RatePolicy.objects.exists()


# --- API keys ---------------------------------------------------------------------------


def test_an_api_key_secret_is_shown_once_and_only_its_hash_is_stored(staff_client, tenant):
    created = staff_client.post(
        f"{MANAGE}/api-keys/", {"tenant": "acme", "name": "pos", "scopes": ["read"]}, format="json"
    )
    key_id = created.json()["id"]
    detail = staff_client.get(f"{MANAGE}/api-keys/{key_id}/")
    listed = staff_client.get(f"{MANAGE}/api-keys/")

    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    key = ApiKey.objects.get(pk=key_id)
    assert key.key_hash == hash_api_key(secret)
    assert secret.startswith(key.prefix) and created.json()["prefix"] == key.prefix
    for body in (detail.json(), listed.json()["results"][0]):
        assert "secret" not in body and "key_hash" not in body
        assert body["prefix"] == key.prefix
    assert secret not in detail.content.decode() + listed.content.decode()
    assert key.key_hash not in detail.content.decode() + listed.content.decode()


def test_api_keys_filter_by_tenant(staff_client, tenant, api_key):
    from tenancy.models import Tenant

    other = Tenant.objects.create(name="Other", slug="other")
    foreign = ApiKey(tenant=other, name="theirs")
    foreign.assign_new_secret()
    foreign.save()

    response = staff_client.get(f"{MANAGE}/api-keys/", {"tenant": "acme"})

    assert [k["name"] for k in response.json()["results"]] == ["ci-robot"]


def test_revoke_an_api_key(staff_client, api_key):
    response = staff_client.post(f"{MANAGE}/api-keys/{api_key.pk}/revoke/")

    assert response.status_code == 200, response.content
    assert response.json()["revoked"] is True and response.json()["is_active"] is False
    assert "secret" not in response.json()
    api_key.refresh_from_db()
    assert api_key.revoked and api_key.revoked_at is not None
    assert log_of(api_key) == ["Revoked the key through the API."]


def test_rotate_an_api_key_returns_the_new_secret_once(staff_client, api_key):
    old_hash = api_key.key_hash

    response = staff_client.post(f"{MANAGE}/api-keys/{api_key.pk}/rotate/")

    assert response.status_code == 200, response.content
    api_key.refresh_from_db()
    assert api_key.key_hash != old_hash
    assert api_key.key_hash == hash_api_key(response.json()["secret"])
    assert "secret" not in staff_client.get(f"{MANAGE}/api-keys/{api_key.pk}/").json()


def test_an_api_key_cannot_move_to_another_tenant(staff_client, api_key):
    from tenancy.models import Tenant

    Tenant.objects.create(name="Other", slug="other")

    response = staff_client.patch(f"{MANAGE}/api-keys/{api_key.pk}/", {"tenant": "other"}, format="json")

    assert "tenant" in assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert ApiKey.objects.get(pk=api_key.pk).tenant.slug == "acme"


def test_bad_api_key_input_is_a_400(staff_client, tenant):
    response = staff_client.post(
        f"{MANAGE}/api-keys/", {"tenant": "nope", "name": "x", "scopes": "read"}, format="json"
    )

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert {"tenant", "scopes"} <= set(errors)
    assert not ApiKey.objects.exists()


def test_api_key_update_and_delete(staff_client, api_key):
    patched = staff_client.patch(
        f"{MANAGE}/api-keys/{api_key.pk}/", {"scopes": ["read", "write"]}, format="json"
    )
    deleted = staff_client.delete(f"{MANAGE}/api-keys/{api_key.pk}/")

    assert patched.status_code == 200 and patched.json()["scopes"] == ["read", "write"]
    assert "secret" not in patched.json()
    assert deleted.status_code == 204 and not ApiKey.objects.exists()


# --- Circuit breakers -------------------------------------------------------------------


def test_circuit_breakers_show_each_target_with_its_breaker_state(
    staff_client, service, target, fresh_breakers
):
    closed = Target.objects.create(service=service, url="http://127.0.0.1:9002")
    breaker = fresh_breakers.get(
        target.pk, "sales", BreakerSettings(failure_threshold=2, minimum_throughput=2)
    )
    breaker.record_failure()
    breaker.record_failure()

    response = staff_client.get(f"{MANAGE}/circuit-breakers/", {"service": "sales"})

    assert response.status_code == 200
    rows = {row["target_id"]: row for row in response.json()["results"]}
    assert rows[target.pk]["service"] == "sales" and rows[target.pk]["url"] == target.url
    assert rows[target.pk]["state"] == "open"
    assert rows[target.pk]["failure_count"] == 2
    assert 0 < rows[target.pk]["time_until_retry"] <= 30
    assert rows[closed.pk] | {"target_id": 0} == rows[closed.pk] | {
        "target_id": 0, "state": "closed", "failure_count": 0, "time_until_retry": 0.0,
    }  # fmt: skip


def test_reset_a_breaker_stamps_the_target_for_every_instance(
    staff_client, target, django_capture_on_commit_callbacks
):
    before = current_config_version()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"{MANAGE}/circuit-breakers/{target.pk}/reset/")

    assert response.status_code == 200, response.content
    target.refresh_from_db()
    assert target.breaker_reset_at is not None
    assert timezone.now() - target.breaker_reset_at < timedelta(seconds=5)
    assert response.json()["breaker_reset_at"] is not None
    assert current_config_version() > before
    assert log_of(target) == ["Reset the circuit breaker through the API."]


def test_reset_an_unknown_breaker_is_a_404(staff_client, db):
    assert_problem(staff_client.post(f"{MANAGE}/circuit-breakers/999/reset/"), 404, "NOT_FOUND")


# --- Health -----------------------------------------------------------------------------


def test_health_shows_the_last_sweep_per_target(staff_client, service, target):
    unchecked = Target.objects.create(service=service, url="http://127.0.0.1:9002")
    TargetHealthCheck.objects.create(target=target, ok=True, status_code=200, latency_ms=3.0)
    latest = TargetHealthCheck.objects.create(
        target=target, ok=False, status_code=503, latency_ms=12.5, error="upstream said 503"
    )
    now = timezone.now()
    Target.objects.filter(pk=target.pk).update(healthy=False, last_checked_at=now)

    response = staff_client.get(f"{MANAGE}/health/")

    assert response.status_code == 200
    body = response.json()
    rows = {row["target_id"]: row for row in body["targets"]}
    assert rows[target.pk]["healthy"] is False and rows[target.pk]["service"] == "sales"
    assert rows[target.pk]["last_checked_at"] is not None
    assert rows[target.pk]["last_check"] == {
        "ok": False, "status_code": 503, "latency_ms": 12.5, "error": "upstream said 503",
        "created_at": body["last_sweep_at"],
    }  # fmt: skip
    assert body["last_sweep_at"].startswith(latest.created_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert rows[unchecked.pk]["last_check"] is None and rows[unchecked.pk]["healthy"] is True


def test_health_filters_by_service(staff_client, target):
    other = Service.objects.create(name="Orders", slug="orders", path_prefix="/api/v1/orders")
    Target.objects.create(service=other, url="http://127.0.0.1:9100")

    body = staff_client.get(f"{MANAGE}/health/", {"service": "orders"}).json()

    assert [row["url"] for row in body["targets"]] == ["http://127.0.0.1:9100"]
    assert body["last_sweep_at"] is None


def test_health_check_now_is_a_503_problem_while_health_checks_do_not_exist(
    staff_client, target, monkeypatch
):
    monkeypatch.setitem(sys.modules, "registry.health", None)  # import fails as if absent

    response = staff_client.post(f"{MANAGE}/health/check/", {}, format="json")

    assert_problem(response, 503, "SERVICE_UNAVAILABLE")


def test_health_check_now_checks_the_enabled_targets_and_reports(staff_client, service, target, monkeypatch):
    Target.objects.create(service=service, url="http://127.0.0.1:9002", enabled=False)
    other = Service.objects.create(name="Orders", slug="orders", path_prefix="/api/v1/orders")
    Target.objects.create(service=other, url="http://127.0.0.1:9100")
    checked = []

    def check_targets_now(targets):
        checked.extend(t.url for t in targets)
        for t in targets:
            TargetHealthCheck.objects.create(target=t, ok=False, status_code=500, latency_ms=1.0)
        targets.update(healthy=False, last_checked_at=timezone.now())
        return []

    fake = types.ModuleType("registry.health")
    fake.check_targets_now = check_targets_now
    monkeypatch.setitem(sys.modules, "registry.health", fake)

    response = staff_client.post(f"{MANAGE}/health/check/", {"service": "sales"}, format="json")

    assert response.status_code == 200, response.content
    assert checked == [target.url]
    [row] = response.json()["targets"]
    assert row["target_id"] == target.pk and row["healthy"] is False
    assert row["last_check"]["status_code"] == 500


def test_health_check_now_with_an_unknown_service_is_a_400(staff_client, db):
    response = staff_client.post(f"{MANAGE}/health/check/", {"service": "nope"}, format="json")

    assert "service" in assert_problem(response, 400, "VALIDATION_ERROR")["errors"]


# --- Config version ---------------------------------------------------------------------


def test_config_version_moves_after_a_change(staff_client, django_capture_on_commit_callbacks):
    before = staff_client.get(f"{MANAGE}/config/").json()["version"]

    with django_capture_on_commit_callbacks(execute=True):
        created = staff_client.post(f"{MANAGE}/services/", service_body(), format="json")
    after = staff_client.get(f"{MANAGE}/config/").json()["version"]

    assert created.status_code == 201
    assert isinstance(before, int) and after > before
    assert after == current_config_version()


# --- Access: staff only, session, token and bearer auth ---------------------------------


@pytest.mark.parametrize("entry", ROOT_ENTRIES)
def test_anonymous_callers_get_a_401_problem_with_www_authenticate(client, db, entry):
    response = client.get(f"{MANAGE}/{entry}/")

    assert_problem(response, 401, "AUTH_ERROR")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("entry", ROOT_ENTRIES)
def test_non_staff_users_get_a_403_problem(member_client, entry):
    response = member_client.get(f"{MANAGE}/{entry}/")

    assert_problem(response, 403, "FORBIDDEN")


def test_non_staff_users_cannot_write(member_client):
    response = member_client.post(f"{MANAGE}/services/", service_body(), format="json")

    assert_problem(response, 403, "FORBIDDEN")
    assert not Service.objects.exists()


def test_a_bad_bearer_token_is_a_401(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")

    assert_problem(client.get(f"{MANAGE}/services/"), 401, "AUTH_ERROR")


def test_drf_token_auth_works_for_staff(staff_user, service):
    token = Token.objects.create(user=staff_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    response = client.get(f"{MANAGE}/services/")

    assert response.status_code == 200
    assert [s["slug"] for s in response.json()["results"]] == ["sales"]


def test_drf_token_of_a_non_staff_user_is_a_403(member_user):
    token = Token.objects.create(user=member_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    assert_problem(client.get(f"{MANAGE}/services/"), 403, "FORBIDDEN")


def test_a_gateway_jwt_of_a_staff_user_works(staff_user, service):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_for_user(staff_user)['access']}")

    response = client.get(f"{MANAGE}/services/")

    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_the_api_root_links_every_resource(staff_client):
    response = staff_client.get(f"{MANAGE}/")

    assert response.status_code == 200
    assert {name: url.split("/api/manage/")[1] for name, url in response.json().items()} == {
        name: f"{name}/" for name in ROOT_ENTRIES
    }


@pytest.mark.parametrize("entry", ("", *(f"{entry}/" for entry in ROOT_ENTRIES)))
def test_the_browsable_api_renders_html_for_staff(staff_client, target, api_key, entry):
    response = staff_client.get(f"{MANAGE}/{entry}", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    content = response.content.decode()
    assert "Django REST framework" in content
    if entry == "api-keys/":
        assert api_key.prefix in content and api_key.key_hash not in content


def test_the_browsable_api_detail_page_of_a_service_renders(staff_client, target):
    response = staff_client.get(f"{MANAGE}/services/{target.service_id}/", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert target.url in response.content.decode()
