"""The control plane of plugins: discovery, /api/manage/plugins/ and .../available/, config
validated against the plugin's JSON Schema at save, plugins refused at load (SPEC section 19)."""

from __future__ import annotations

import json

import pytest

AVAILABLE = "/api/manage/plugins/available/"
PLUGINS = "/api/manage/plugins/"


@pytest.fixture
def sales(db):
    from registry.models import Service

    return Service.objects.create(name="Sales", slug="sales", path_prefix="/api/v1/sales")


def test_available_lists_builtins_the_entry_point_package_and_dotted_paths(staff_client):
    response = staff_client.get(AVAILABLE)

    assert response.status_code == 200
    by_name = {plugin["name"]: plugin for plugin in response.json()}
    assert {"request-termination", "mock", "request-validator"} <= by_name.keys()  # built-ins
    assert by_name["hello-header"]["version"] == "1.0.0"  # the pip-installed example package
    assert by_name["hello-header"]["schema"]["required"] == ["greeting"]
    assert "mark-one" in by_name  # GATEWAY_PLUGINS
    assert set(by_name["mark-one"]) == {"name", "version", "schema"}


def test_a_plugin_that_fails_to_load_is_refused_and_the_others_still_load(plugin_catalogue, staff_client):
    failures = plugin_catalogue.failures

    assert "tests.plugins.no_such_module.Plugin (GATEWAY_PLUGINS)" in failures
    assert "ModuleNotFoundError" in failures["tests.plugins.no_such_module.Plugin (GATEWAY_PLUGINS)"]
    no_hooks = failures["tests.plugins.sample_plugins.NoHooks (GATEWAY_PLUGINS)"]
    assert no_hooks == "plugin 'no-hooks' defines none of the hooks access, response, log"
    assert "not a valid JSON Schema" in failures["tests.plugins.sample_plugins.BadSchema (GATEWAY_PLUGINS)"]
    names = {plugin["name"] for plugin in staff_client.get(AVAILABLE).json()}
    assert not names & {"no-hooks", "bad-schema"}
    assert "mark-two" in names


def test_configuring_a_plugin_refused_at_load_names_the_reason(staff_client):
    response = staff_client.post(PLUGINS, {"plugin": "no-hooks"}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR", body
    assert "failed to load" in str(body["errors"]["plugin"]), body
    assert "defines none of the hooks" in str(body["errors"]["plugin"])


def test_an_unknown_plugin_is_refused_with_the_available_names(staff_client):
    response = staff_client.post(PLUGINS, {"plugin": "nope"}, format="json")

    assert response.status_code == 400
    assert "No plugin named 'nope' is installed" in str(response.json()["errors"]["plugin"])


def test_create_read_update_delete_in_the_spec_shape(staff_client, sales, tenant):
    created = staff_client.post(
        PLUGINS,
        {"plugin": "hello-header", "service": "sales", "tenant": "acme", "config": {"greeting": "hola"}},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body == {
        "id": body["id"],
        "plugin": "hello-header",
        "enabled": True,
        "service": "sales",
        "tenant": "acme",
        "priority": None,
        "config": {"greeting": "hola"},
    }
    url = f"{PLUGINS}{body['id']}/"
    patched = staff_client.patch(url, {"enabled": False, "priority": 5}, format="json")
    assert patched.status_code == 200
    assert (patched.json()["enabled"], patched.json()["priority"]) == (False, 5)
    assert staff_client.get(PLUGINS, {"service": "sales"}).json()["results"][0]["id"] == body["id"]
    assert staff_client.delete(url).status_code == 204
    assert staff_client.get(url).status_code == 404


def test_a_global_config_has_null_service_and_tenant(staff_client):
    response = staff_client.post(PLUGINS, {"plugin": "mark-one"}, format="json")

    assert response.status_code == 201
    assert (response.json()["service"], response.json()["tenant"]) == (None, None)


@pytest.mark.parametrize(
    ("config", "pointer_message"),
    [
        ({}, "/: 'greeting' is a required property"),
        ({"greeting": 7}, "/greeting: 7 is not of type 'string'"),
        ({"greeting": "hi", "extra": 1}, "/: Additional properties are not allowed ('extra' was unexpected)"),
        ([], "/: must be a JSON object"),
    ],
)
def test_config_is_validated_against_the_plugin_schema_with_field_errors(
    staff_client, config, pointer_message
):
    response = staff_client.post(PLUGINS, {"plugin": "hello-header", "config": config}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["config"] == [pointer_message]


def test_a_builtin_config_out_of_range_is_refused(staff_client):
    response = staff_client.post(
        PLUGINS, {"plugin": "request-termination", "config": {"status_code": 42}}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"]["config"] == ["/status_code: 42 is less than the minimum of 200"]


def test_one_config_per_plugin_and_scope(staff_client, sales):
    first = staff_client.post(PLUGINS, {"plugin": "mark-one", "service": "sales"}, format="json")
    assert first.status_code == 201

    again = staff_client.post(PLUGINS, {"plugin": "mark-one", "service": "sales"}, format="json")

    assert again.status_code == 400
    assert "already configured for this scope" in str(again.json()["errors"])


def test_unknown_service_or_tenant_slug_is_a_field_error(staff_client):
    response = staff_client.post(PLUGINS, {"plugin": "mark-one", "service": "ghost"}, format="json")

    assert response.status_code == 400
    assert "service" in response.json()["errors"]


def test_priority_is_range_checked(staff_client):
    response = staff_client.post(PLUGINS, {"plugin": "mark-one", "priority": 10**9}, format="json")

    assert response.status_code == 400
    assert "priority" in response.json()["errors"]


def test_non_staff_cannot_read_plugins(member_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(member_user)

    assert client.get(AVAILABLE).status_code == 403
    assert client.get(PLUGINS).status_code == 403


def test_a_save_moves_the_config_version(staff_client):
    from registry.config_version import current_config_version

    before = current_config_version()
    staff_client.post(PLUGINS, {"plugin": "mark-one"}, format="json")

    assert current_config_version() > before


def test_admin_lists_load_failures_and_refuses_a_bad_config(admin_client_plugins):
    client = admin_client_plugins
    listing = client.get("/admin/plugins/pluginconfig/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "Plugins refused at load" in page
    assert "defines none of the hooks" in page

    response = client.post(
        "/admin/plugins/pluginconfig/add/",
        {"plugin": "hello-header", "enabled": "on", "priority": "", "config": '{"greeting": 7}'},
    )

    assert response.status_code == 200  # the form again, with the error
    assert "/greeting: 7 is not of type" in response.content.decode()
    from plugins.models import PluginConfig

    assert not PluginConfig.objects.exists()


@pytest.fixture
def admin_client_plugins(staff_user):
    from django.test import Client

    client = Client()
    client.force_login(staff_user)
    return client


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "This field may not be null."),
        ({"greeting": "a\u0000b"}, "/greeting: must not contain a NUL character"),
        ({"greeting": "\ud800"}, "/greeting: must not contain surrogate characters"),
        ({"\ud800": "x"}, "/: member names must not contain surrogate characters"),
    ],
    ids=["null", "nul-character", "surrogate", "surrogate-name"],
)
def test_configs_no_database_can_store_are_field_errors_not_500(staff_client, config, message):
    body = json.dumps({"plugin": "hello-header", "config": config})  # ASCII: "\ud800" escaped

    response = staff_client.generic("POST", PLUGINS, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["errors"]["config"] == [message]


def test_a_change_through_the_api_is_in_the_audit_trail(staff_client, tenant):
    from tenancy.models import AuditEvent

    created = staff_client.post(PLUGINS, {"plugin": "mark-one", "tenant": "acme"}, format="json").json()
    staff_client.patch(f"{PLUGINS}{created['id']}/", {"enabled": False}, format="json")

    events = AuditEvent.objects.filter(model__iexact="plugins.pluginconfig").order_by("pk")
    assert [e.action for e in events] == ["create", "update"]
    assert events[1].changes["enabled"] == [True, False]
    assert events[0].tenant.slug == "acme"
