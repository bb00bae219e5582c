"""OpenAPI at /api/schema/ and Swagger UI at /api/docs/: complete, valid, and CDN-free."""

from __future__ import annotations

import re

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema

MANAGEMENT_OPERATIONS = {
    "/api/manage/services/": {"get", "post"},
    "/api/manage/services/{id}/": {"get", "put", "patch", "delete"},
    "/api/manage/services/{id}/purge-cache/": {"post"},
    "/api/manage/service-versions/": {"get", "post"},
    "/api/manage/service-versions/{id}/": {"get", "put", "patch", "delete"},
    "/api/manage/targets/": {"get", "post"},
    "/api/manage/targets/{id}/": {"get", "put", "patch", "delete"},
    "/api/manage/rate-policies/": {"get", "post"},
    "/api/manage/rate-policies/{id}/": {"get", "put", "patch", "delete"},
    "/api/manage/api-keys/": {"get", "post"},
    "/api/manage/api-keys/{id}/": {"get", "put", "patch", "delete"},
    "/api/manage/api-keys/{id}/revoke/": {"post"},
    "/api/manage/api-keys/{id}/rotate/": {"post"},
    "/api/manage/circuit-breakers/": {"get"},
    "/api/manage/circuit-breakers/{id}/": {"get"},
    "/api/manage/circuit-breakers/{id}/reset/": {"post"},
    "/api/manage/data-planes/": {"get"},
    "/api/manage/data-planes/{id}/": {"get"},
    "/api/manage/health/": {"get"},
    "/api/manage/health/check/": {"post"},
    "/api/manage/config/": {"get"},
    "/api/manage/config/export": {"get"},
    "/api/manage/config/diff": {"post"},
    "/api/manage/config/apply": {"post"},
    "/api/manage/config/schema": {"get"},
    "/api/manage/tenants/": {"get", "post"},
    "/api/manage/tenants/{id}/": {"get", "put", "patch", "delete"},
    "/api/manage/tenants/{id}/read-only/": {"post"},
    "/api/manage/subscriptions/": {"get", "post"},
    "/api/manage/subscriptions/{id}/": {"get", "put", "patch", "delete"},
    "/api/manage/notification-rules/": {"get", "post"},
    "/api/manage/notification-rules/{id}/": {"get", "put", "patch", "delete"},
    "/api/manage/identity-providers/": {"get", "post"},
    "/api/manage/identity-providers/{id}/": {"get", "put", "patch", "delete"},
    "/api/manage/audit-events/": {"get"},
    "/api/manage/audit-events/{id}/": {"get"},
    "/api/manage/tenants/{id}/audit/": {"get"},
    "/api/manage/alerts/": {"get"},
    "/api/manage/alerts/{id}/": {"get"},
    "/api/manage/plugins/": {"get", "post"},
    "/api/manage/plugins/{id}/": {"get", "put", "patch", "delete"},
    "/api/manage/plugins/available/": {"get"},
    "/api/manage/usage/": {"get"},
    "/api/manage/plans/": {"get"},
    "/api/manage/plans/{id}/": {"get"},
}


@pytest.fixture
def schema_and_messages(client, db) -> tuple[dict, list[str]]:
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        response = client.get("/api/schema/", {"format": "json"})
    messages = [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
    GENERATOR_STATS.reset()
    assert response.status_code == 200
    return response.json(), messages


def test_the_schema_is_valid_openapi_3(schema_and_messages):
    schema, _ = schema_and_messages

    validate_schema(schema)  # raises on an invalid document
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Gateway management API"


def test_schema_generation_raises_no_new_warnings(schema_and_messages):
    _, messages = schema_and_messages

    assert messages == []


def test_every_management_operation_is_in_the_schema(schema_and_messages):
    schema, _ = schema_and_messages

    documented = {
        path: set(operations) & {"get", "post", "put", "patch", "delete"}
        for path, operations in schema["paths"].items()
        if path.startswith("/api/manage/") and path != "/api/manage/"
    }
    assert documented == MANAGEMENT_OPERATIONS


def test_the_schema_documents_secrets_filters_and_auth(schema_and_messages):
    schema, _ = schema_and_messages
    paths, components = schema["paths"], schema["components"]

    created = paths["/api/manage/api-keys/"]["post"]["responses"]["201"]
    created_ref = created["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "secret" in components["schemas"][created_ref]["properties"]
    assert "secret" not in components["schemas"]["ApiKey"]["properties"]
    assert "key_hash" not in components["schemas"]["ApiKey"]["properties"]
    target_params = {p["name"] for p in paths["/api/manage/targets/"]["get"]["parameters"]}
    assert {"service", "enabled", "search", "ordering", "limit", "offset"} <= target_params
    assert {"jwtAuth", "tokenAuth", "cookieAuth"} <= set(components["securitySchemes"])
    assert paths["/api/manage/tenants/{id}/read-only/"]["post"]["tags"] == ["tenants"]
    assert paths["/api/manage/health/check/"]["post"]["tags"] == ["health"]
    unavailable = paths["/api/manage/health/check/"]["post"]["responses"]["503"]
    assert "application/problem+json" in unavailable["content"]


def test_swagger_ui_renders_from_local_static_files_only(client, db):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert not re.search(r"https?://", html), "the docs page must not load anything remotely"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert all(a.startswith("/static/") for a in assets), assets
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        served.close()
