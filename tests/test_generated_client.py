"""A platform developer scripts the gateway with a client generated from /api/schema/.

The client is generated at test time by `openapi-python-client` (a generator nobody on this
project wrote) into a temporary package, imported, and used for every management call: the
schema is right only if what the generator made of it works against a live gateway. Each
parsed body must fit the generator's own model for its status (problem+json included), with
no field the schema does not name; an undocumented status raises in the client itself.
Data-plane calls with the API key are plain httpx: no schema describes them.
"""

from __future__ import annotations

import datetime
import importlib
import subprocess
import sys
from pathlib import Path

import attrs
import httpx
import pytest

from tests.live import GatewayServer, RecordingUpstream, free_port, wait_until

PACKAGE = "gateway_client"
GENERATE_TIMEOUT_SECONDS = 120
# No post hooks: the generator would otherwise run ruff from PATH over its output. It has no
# YAML body type of its own: a YAML request body (declarative config) is sent as raw bytes.
GENERATOR_CONFIG = f"""\
package_name_override: {PACKAGE}
post_hooks: []
content_type_overrides:
  application/yaml: application/octet-stream
"""
PROBLEM_CONTENT_TYPE = "application/problem+json"
STAFF_PASSWORD = "platform-pass-123"
RATE_LIMIT = 40  # per minute for the API key; the scenario sends fewer before it tests it
BREAKER_THRESHOLD = 2
PUBLISH_TIMEOUT_SECONDS = 3
READ_ONLY_REASON = "Invoice 2026-11 unpaid"

pytestmark = pytest.mark.slow


# --- generating the client -------------------------------------------------------------------


def generate_client(schema: bytes, directory: Path) -> str:
    """Run the generator over the schema; returns what it printed (warnings included)."""
    (directory / "schema.json").write_bytes(schema)
    (directory / "config.yaml").write_text(GENERATOR_CONFIG)
    command = [
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        str(directory / "schema.json"),
        "--config",
        str(directory / "config.yaml"),
        "--meta",
        "none",
        "--output-path",
        str(directory / PACKAGE),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=GENERATE_TIMEOUT_SECONDS)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def generated(tmp_path_factory, django_db_setup, django_db_blocker):
    """The generated package, importable as `gateway_client` while this module runs."""
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    directory = tmp_path_factory.mktemp("generated")
    output = generate_client(response.content, directory)
    # The generator says "Warning(s) encountered" when it had to leave a piece out.
    assert "Warning(s) encountered" not in output, output
    sys.path.insert(0, str(directory))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(directory))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


# --- what every parsed response must be ------------------------------------------------------


def undocumented_fields(model, where: str = "body") -> list[str]:
    """Fields the generated model did not know (it keeps them in additional_properties).
    Models for free-form objects (only additional_properties) may hold anything.
    """
    if not attrs.has(type(model)):
        return []
    declared = [f.name for f in attrs.fields(type(model)) if f.name != "additional_properties"]
    found = [f"{where}.{key}" for key in model.additional_properties] if declared else []
    for name in declared:
        value = getattr(model, name)
        for index, item in enumerate(value if isinstance(value, list) else [value]):
            found += undocumented_fields(item, f"{where}.{name}[{index}]")
    return found


def parsed(response, status: int, model):
    """The body of a documented answer, as the generator's model for that status."""
    assert response.status_code == status, response.content[:500]
    assert isinstance(response.parsed, model), response.content[:500]
    expected_type = PROBLEM_CONTENT_TYPE if status >= 400 else "application/json"
    assert response.headers["content-type"].startswith(expected_type)
    assert undocumented_fields(response.parsed) == []
    return response.parsed


# --- a live gateway --------------------------------------------------------------------------


@pytest.fixture
def live(transactional_db, settings):
    """A gateway (data plane and management API on one port) and two real upstreams."""
    settings.RATE_LIMIT_DEFAULT = ""
    upstreams = [RecordingUpstream().start(), RecordingUpstream().start()]
    gateway = GatewayServer().start()
    yield gateway, upstreams
    gateway.stop()
    for upstream in upstreams:
        upstream.stop()


@pytest.fixture
def staff(transactional_db):
    """The one thing no API creates: the first staff account."""
    from tenancy.models import User

    return User.objects.create_user(
        "platform@example.com", email="platform@example.com", password=STAFF_PASSWORD, is_staff=True
    )


def log_in(generated, base_url: str, username: str, password: str):
    """A client authenticated with the access token that the login endpoint hands out."""
    from gateway_client import AuthenticatedClient, Client
    from gateway_client.api.auth import v1_auth_login_create
    from gateway_client.models import LoginRequest, TokenPair

    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    body = LoginRequest(username=username, password=password)
    pair = parsed(v1_auth_login_create.sync_detailed(client=anonymous, body=body), 200, TokenPair)
    return AuthenticatedClient(base_url=base_url, token=pair.access, raise_on_unexpected_status=True)


# --- the scenario ----------------------------------------------------------------------------


def test_a_platform_developer_scripts_the_gateway_with_the_generated_client(generated, live, staff):
    from gateway_client.api.api_keys import manage_api_keys_create, manage_api_keys_retrieve
    from gateway_client.api.circuit_breakers import (
        manage_circuit_breakers_list,
        manage_circuit_breakers_reset_create,
    )
    from gateway_client.api.config import manage_config_retrieve
    from gateway_client.api.rate_policies import manage_rate_policies_create
    from gateway_client.api.services import manage_services_create
    from gateway_client.api.subscriptions import manage_subscriptions_create
    from gateway_client.api.tenants import manage_tenants_create, manage_tenants_read_only_create
    from gateway_client.models import (
        ApiKey,
        ApiKeyWithSecret,
        ApiKeyWithSecretRequest,
        CircuitBreaker,
        ConfigVersion,
        PaginatedCircuitBreakerList,
        RatePolicy,
        RatePolicyRequest,
        ReadOnlyToggleRequest,
        RoleEnum,
        ScopeEnum,
        Service,
        ServiceRequest,
        ServiceTargetRequest,
        StateEnum,
        Subscription,
        SubscriptionRequest,
        Tenant,
        TenantRequest,
    )

    gateway, (first, second) = live
    api = log_in(generated, gateway.url, staff.username, STAFF_PASSWORD)
    version_before = parsed(manage_config_retrieve.sync_detailed(client=api), 200, ConfigVersion).version

    # A tenant with a subscription, a service with two targets, a rate policy, an API key.
    tenant = parsed(
        manage_tenants_create.sync_detailed(
            client=api, body=TenantRequest(name="Bakery Bilbao", slug="bilbao")
        ),
        201,
        Tenant,
    )
    period_end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    subscription = SubscriptionRequest(tenant="bilbao", current_period_end=period_end)
    parsed(manage_subscriptions_create.sync_detailed(client=api, body=subscription), 201, Subscription)
    service_body = ServiceRequest(
        name="Orders",
        slug="orders",
        path_prefix="/api/v1/orders",
        retries=0,
        breaker_failure_threshold=BREAKER_THRESHOLD,
        breaker_minimum_throughput=1,
        targets=[ServiceTargetRequest(url=first.url), ServiceTargetRequest(url=second.url)],
    )
    service = parsed(manage_services_create.sync_detailed(client=api, body=service_body), 201, Service)
    assert sorted(t.url for t in service.targets) == sorted([first.url, second.url])
    policy_body = RatePolicyRequest(
        name="orders-per-key", scope=ScopeEnum.API_KEY, service="orders", limit=RATE_LIMIT, window_seconds=60
    )
    policy = parsed(manage_rate_policies_create.sync_detailed(client=api, body=policy_body), 201, RatePolicy)
    assert (policy.service, policy.limit) == ("orders", RATE_LIMIT)
    key_body = ApiKeyWithSecretRequest(tenant="bilbao", name="ci-robot", role=RoleEnum.MEMBER)
    key = parsed(manage_api_keys_create.sync_detailed(client=api, body=key_body), 201, ApiKeyWithSecret)
    assert key.secret.startswith(key.prefix)
    # The secret is shown once: reading the key back never shows it again.
    again = manage_api_keys_retrieve.sync_detailed(key.id, client=api)
    assert "secret" not in again.content.decode() and parsed(again, 200, ApiKey).prefix == key.prefix
    gateway.sync()

    # The key calls the service through the gateway; both targets serve.
    headers = {"X-API-Key": key.secret}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10, trust_env=False) as data_plane:
        reads = [data_plane.get("/api/v1/orders/items") for _ in range(4)]
        assert [r.status_code for r in reads] == [200] * 4
        assert len(first.hits("/items")) == len(second.hits("/items")) == 2
        assert reads[0].json()["headers"].get("x-api-key") is None  # never forwarded

        # The second target dies: its breaker opens, staff see it and reset it once it is back.
        second_target = next(t for t in service.targets if t.url == second.url)
        port = second.port
        second.stop()
        for _ in range(2 * BREAKER_THRESHOLD):
            data_plane.get("/api/v1/orders/items")

        def breaker_of_second() -> CircuitBreaker | None:
            listing = manage_circuit_breakers_list.sync_detailed(client=api, service="orders")
            rows = parsed(listing, 200, PaginatedCircuitBreakerList).results
            row = next(r for r in rows if r.target_id == second_target.id)
            return row if row.state == StateEnum.OPEN else None

        wait_until(breaker_of_second, PUBLISH_TIMEOUT_SECONDS, message="the open breaker in the API")
        second.start(port)
        reset = manage_circuit_breakers_reset_create.sync_detailed(second_target.id, client=api)
        assert parsed(reset, 200, CircuitBreaker).breaker_reset_at is not None
        gateway.sync()
        second.clear()
        wait_until(
            lambda: data_plane.get("/api/v1/orders/items").status_code == 200 and second.hits("/items"),
            PUBLISH_TIMEOUT_SECONDS,
            message="traffic back on the reset target",
        )

        # Read-only with a reason: writes are refused with that reason, reads still pass.
        toggle = ReadOnlyToggleRequest(read_only=True, reason=READ_ONLY_REASON)
        toggled = parsed(
            manage_tenants_read_only_create.sync_detailed(tenant.id, client=api, body=toggle), 200, Tenant
        )
        assert (toggled.read_only, toggled.read_only_reason) == (True, READ_ONLY_REASON)
        refused = wait_until(
            lambda: (r := data_plane.post("/api/v1/orders/items", json={})).status_code == 403 and r,
            PUBLISH_TIMEOUT_SECONDS,
            message="the write refused",
        )
        assert refused.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
        assert (refused.json()["code"], refused.json()["detail"]) == ("TENANT_READ_ONLY", READ_ONLY_REASON)
        assert data_plane.get("/api/v1/orders/items").status_code == 200

        # The rate policy holds the key to its limit per minute.
        statuses = [data_plane.get("/api/v1/orders/items").status_code for _ in range(RATE_LIMIT + 1)]
        assert statuses[-1] == 429 and set(statuses) == {200, 429}
        limited = data_plane.get("/api/v1/orders/items")
        assert limited.json()["code"] == "RATE_LIMIT" and int(limited.headers["retry-after"]) > 0

    # Every registry change moved the configuration version.
    version_after = parsed(manage_config_retrieve.sync_detailed(client=api), 200, ConfigVersion).version
    assert version_after > version_before


def test_problem_responses_parse_into_the_generated_problem_model(generated, live, staff):
    from gateway_client import AuthenticatedClient, Client
    from gateway_client.api.auth import v1_auth_login_create
    from gateway_client.api.config import manage_config_retrieve
    from gateway_client.api.services import manage_services_create, manage_services_list
    from gateway_client.api.tenants import manage_tenants_read_only_create
    from gateway_client.models import LoginRequest, Problem, ReadOnlyToggleRequest, ServiceRequest

    from tenancy.models import User

    gateway, _ = live
    api = log_in(generated, gateway.url, staff.username, STAFF_PASSWORD)

    # 400: each invalid field named, under the documented `errors`.
    bad = ServiceRequest(name="Orders", slug="orders", path_prefix="orders", targets=[])
    invalid = parsed(manage_services_create.sync_detailed(client=api, body=bad), 400, Problem)
    assert invalid.code == "VALIDATION_ERROR" and "path_prefix" in invalid.errors.additional_properties

    # 401: a wrong password, and a token that is not one.
    anonymous = Client(base_url=gateway.url, raise_on_unexpected_status=True)
    wrong = LoginRequest(username=staff.username, password="not-the-password")
    assert (
        parsed(v1_auth_login_create.sync_detailed(client=anonymous, body=wrong), 401, Problem).status == 401
    )
    forged = AuthenticatedClient(base_url=gateway.url, token="forged", raise_on_unexpected_status=True)
    assert parsed(manage_config_retrieve.sync_detailed(client=forged), 401, Problem).code == "AUTH_ERROR"

    # 403: a signed-in user who is not staff.
    User.objects.create_user("member@example.com", password=STAFF_PASSWORD)
    member = log_in(generated, gateway.url, "member@example.com", STAFF_PASSWORD)
    assert parsed(manage_services_list.sync_detailed(client=member), 403, Problem).code == "FORBIDDEN"

    # 404: no such tenant.
    toggle = ReadOnlyToggleRequest(read_only=True, reason="x")
    missing = manage_tenants_read_only_create.sync_detailed(free_port(), client=api, body=toggle)
    problem = parsed(missing, 404, Problem)
    assert problem.code == "NOT_FOUND" and problem.request_id and problem.instance.startswith("/api/manage/")
