"""The registry admin as staff use it: validation, API key secrets, breaker and health actions."""

from __future__ import annotations

import re
import sys
import types
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from registry.models import (
    ApiKey,
    ConfigState,
    RatePolicy,
    Service,
    Target,
    TargetHealthCheck,
    hash_api_key,
)
from tests.control_plane import admin_url

SECRET_RE = re.compile(r"gwk_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}")


@pytest.fixture
def registry_objects(service, target, api_key):
    return {
        Service: service,
        Target: target,
        TargetHealthCheck: TargetHealthCheck.objects.create(
            target=target, ok=False, status_code=503, latency_ms=12.5, error="upstream said 503"
        ),
        RatePolicy: RatePolicy.objects.create(
            name="tenant-minute", scope="tenant", limit=300, window_seconds=60
        ),
        ApiKey: api_key,
        ConfigState: ConfigState.objects.get_or_create(pk=1)[0],
    }


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def change_log(obj) -> list[str]:
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj),
        object_id=str(obj.pk),
        action_flag=CHANGE,
    )
    return [entry.change_message for entry in entries]


def run_action(client, model, action: str, objects, **extra):
    data = {
        "action": action,
        "_selected_action": [obj.pk for obj in objects],
        "index": "0",
        **extra,
    }
    return client.post(admin_url(model, "changelist"), data, follow=True)


def service_form(**overrides) -> dict:
    data = {
        "name": "Orders",
        "slug": "orders",
        "description": "",
        "enabled": "on",
        "path_prefix": "/api/v1/orders",
        "upstream_path": "",
        "load_balancing": "weighted_round_robin",
        "allowed_methods": ["GET", "POST"],
        "connect_timeout": "2",
        "read_timeout": "30",
        "retries": "2",
        "cache_ttl": "0",
        "default_version": "1",
        "auth_required": "on",
        "public_paths": "/public, /docs",
        "read_roles": ["viewer"],
        "read_scopes": "",
        "write_roles": ["member"],
        "write_scopes": "write",
        "breaker_failure_threshold": "5",
        "breaker_failure_window": "120",
        "breaker_minimum_throughput": "5",
        "breaker_recovery_timeout": "30",
        "breaker_success_threshold": "3",
        "health_path": "/health",
        "health_interval": "30",
        "max_body_bytes": str(10 * 1024 * 1024),
        "targets-TOTAL_FORMS": "1",
        "targets-INITIAL_FORMS": "0",
        "targets-MIN_NUM_FORMS": "0",
        "targets-MAX_NUM_FORMS": "1000",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
        "targets-0-url": "http://127.0.0.1:9002",
        "targets-0-weight": "100",
        "targets-0-enabled": "on",
    }
    data.update(overrides)
    return data


# --- Pages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [Service, Target, TargetHealthCheck, RatePolicy, ApiKey, ConfigState],
    ids=lambda model: model.__name__,
)
def test_changelist_and_change_form_render_for_staff(admin_client, registry_objects, model):
    obj = registry_objects[model]

    changelist = admin_client.get(admin_url(model, "changelist"))
    change = admin_client.get(admin_url(model, "change", obj.pk))

    assert changelist.status_code == 200
    assert change.status_code == 200
    assert changelist.context["cl"].result_count == 1
    assert escape(str(obj)) in change.content.decode()


def test_admin_index_has_the_gateway_header_and_a_dashboard_link(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert "Gateway administration" in page
    assert 'href="/dashboard/"' in page


def test_history_and_config_state_pages_are_read_only(admin_client, registry_objects):
    check = registry_objects[TargetHealthCheck]

    change = admin_client.get(admin_url(TargetHealthCheck, "change", check.pk)).content.decode()

    assert 'name="_save"' not in change
    assert "upstream said 503" in change
    assert admin_client.get(admin_url(TargetHealthCheck, "add")).status_code == 403
    assert admin_client.get(admin_url(ConfigState, "add")).status_code == 403
    state = registry_objects[ConfigState]
    assert admin_client.post(admin_url(ConfigState, "delete", state.pk), {"post": "yes"}).status_code == 403
    assert ConfigState.objects.filter(pk=state.pk).exists()


# --- Services and targets ---------------------------------------------------------------


def test_adding_a_service_with_its_target_through_the_admin(admin_client):
    response = admin_client.post(admin_url(Service, "add"), service_form(), follow=True)

    assert response.status_code == 200
    service = Service.objects.get(slug="orders")
    assert service.allowed_methods == ["GET", "POST"]
    assert service.public_paths == ["/public", "/docs"]
    assert (service.read_roles, service.write_roles, service.write_scopes) == (
        ["viewer"],
        ["member"],
        ["write"],
    )
    assert [t.url for t in service.targets.all()] == ["http://127.0.0.1:9002"]


def test_a_reserved_prefix_is_refused_and_nothing_is_created(admin_client):
    response = admin_client.post(admin_url(Service, "add"), service_form(path_prefix="/api/v1/auth"))

    assert response.status_code == 200
    assert "/api/v1/auth is served by the gateway itself" in response.content.decode()
    assert not Service.objects.exists()
    assert not Target.objects.exists()


def test_a_target_pointing_at_the_metadata_address_is_refused(admin_client, service):
    response = admin_client.post(
        admin_url(Target, "add"),
        {"service": service.pk, "url": "http://169.254.169.254", "weight": "100", "enabled": "on"},
    )

    assert response.status_code == 200
    assert "is in a denied network" in response.content.decode()
    assert not Target.objects.exists()


def test_reset_breaker_action_stamps_the_target_and_logs_it(admin_client, target):
    before = timezone.now()

    response = run_action(admin_client, Target, "reset_breaker", [target])

    target.refresh_from_db()
    assert target.breaker_reset_at is not None and target.breaker_reset_at >= before
    assert "Reset the circuit breakers of 1 target(s)." in messages_of(response)
    assert change_log(target) == ["Reset the circuit breaker."]


def test_service_reset_action_resets_all_its_targets_and_no_other(admin_client, service, target):
    second = Target.objects.create(service=service, url="http://127.0.0.1:9003")
    other_service = Service.objects.create(name="Stock", slug="stock", path_prefix="/api/v1/stock")
    untouched = Target.objects.create(service=other_service, url="http://127.0.0.1:9004")

    response = run_action(admin_client, Service, "reset_all_breakers", [service])

    assert "Reset the circuit breakers of 2 target(s)." in messages_of(response)
    for reset in (target, second):
        reset.refresh_from_db()
        assert reset.breaker_reset_at is not None
        assert change_log(reset) == ["Reset the circuit breaker."]
    untouched.refresh_from_db()
    assert untouched.breaker_reset_at is None
    assert change_log(service) == ["Reset the circuit breakers of all targets."]


def test_health_check_action_warns_while_health_checks_do_not_exist(admin_client, target, monkeypatch):
    monkeypatch.setitem(sys.modules, "registry.health", None)  # import fails as if absent

    response = run_action(admin_client, Target, "run_health_check_now", [target])

    assert "Health checks are not available yet." in messages_of(response)


def test_health_check_action_checks_the_service_targets_and_reports(
    admin_client, service, target, monkeypatch
):
    failing = Target.objects.create(service=service, url="http://127.0.0.1:9005")
    checked = []

    def check_targets_now(targets):
        checked.extend(sorted(t.url for t in targets))
        Target.objects.filter(pk=failing.pk).update(healthy=False)
        return []

    fake = types.ModuleType("registry.health")
    fake.check_targets_now = check_targets_now
    monkeypatch.setitem(sys.modules, "registry.health", fake)

    response = run_action(admin_client, Service, "run_health_check_now", [service])

    assert checked == ["http://127.0.0.1:9001", "http://127.0.0.1:9005"]
    assert "Checked 2 target(s): 1 healthy, 1 unhealthy." in messages_of(response)
    assert change_log(failing) == ["Ran a health check now."]


# --- API keys ---------------------------------------------------------------------------


def test_adding_an_api_key_shows_the_secret_once_and_stores_only_its_hash(admin_client, tenant):
    response = admin_client.post(
        admin_url(ApiKey, "add"),
        {
            "tenant": tenant.pk,
            "name": "pos-terminal",
            "role": "member",
            "scopes": "read, write",
            "expires_at_0": "",
            "expires_at_1": "",
        },
        follow=True,
    )

    shown = [m for m in messages_of(response) if "Copy it now, it will not be shown again" in m]
    assert len(shown) == 1
    secret = SECRET_RE.search(shown[0]).group()
    key = ApiKey.objects.get(name="pos-terminal")
    assert key.key_hash == hash_api_key(secret)
    assert secret.startswith(key.prefix)
    assert key.scopes == ["read", "write"]
    assert secret not in str(ApiKey.objects.filter(pk=key.pk).values().get())
    change_page = admin_client.get(admin_url(ApiKey, "change", key.pk)).content.decode()
    assert secret not in change_page
    assert key.key_hash not in change_page
    assert key.key_hash[:12] in change_page
    assert secret not in admin_client.get(admin_url(ApiKey, "changelist")).content.decode()


def test_revoke_action_revokes_and_logs(admin_client, api_key):
    response = run_action(admin_client, ApiKey, "revoke_keys", [api_key])

    api_key.refresh_from_db()
    assert api_key.revoked and api_key.revoked_at is not None
    assert not api_key.is_active
    assert "Revoked 1 API key(s)." in messages_of(response)
    assert change_log(api_key) == ["Revoked the key."]


def test_rotate_action_replaces_the_secret_shows_it_once_and_logs(admin_client, api_key):
    old_hash, old_prefix = api_key.key_hash, api_key.prefix

    response = run_action(admin_client, ApiKey, "rotate_keys", [api_key])

    api_key.refresh_from_db()
    (shown,) = [m for m in messages_of(response) if "Copy it now" in m]
    secret = SECRET_RE.search(shown).group()
    assert api_key.key_hash == hash_api_key(secret) != old_hash
    assert change_log(api_key) == [f"Rotated the secret (was {old_prefix}, now {api_key.prefix})."]
    assert secret not in admin_client.get(admin_url(ApiKey, "changelist")).content.decode()


def test_api_key_status_filter_separates_active_expired_and_revoked(admin_client, tenant, api_key):
    expired = ApiKey(tenant=tenant, name="old", expires_at=timezone.now() - timedelta(days=1))
    expired.assign_new_secret()
    expired.save()

    def names(status: str) -> list[str]:
        response = admin_client.get(admin_url(ApiKey, "changelist"), {"status": status})
        return [key.name for key in response.context["cl"].result_list]

    assert names("active") == ["ci-robot"]
    assert names("expired") == ["old"]
    assert names("revoked") == []
