"""The one outbound guard (SPEC section 14): every URL the gateway fetches itself is refused at
save when it points at a denied network, and refused again at connect time on the address a
name resolves to then (DNS rebinding to the metadata address). A token's claims never make
the gateway fetch a URL staff did not register.

Name resolution is answered by `outbound.lookup_answers` (the guard's one lookup hook); every
"nothing was fetched" is proven by a real listening socket that records connections. A
rebinding name answers [127.0.0.1, 169.254.169.254]: without the guard the client would dial
the first address and the recorder would see it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time

import httpx
import pytest
from django.core.exceptions import ValidationError

from alerts.models import NotificationDelivery, NotificationRule
from gateway_project.core import outbound
from registry.models import Service, Target
from tenancy.models import IdentityProvider
from tests.control_plane import admin_url, assert_problem
from tests.proxy.test_idp import AUDIENCE, ISSUER, ROLE_MAPPING, SigningKey, claims

MANAGE = "/api/manage"
METADATA = "169.254.169.254"
REBINDING = "rebind.example.test"  # resolves to loopback, then to the metadata address too
FRIENDLY = "friendly.example.test"  # resolves to loopback only
OK_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
)


class ConnectionRecorder:
    """A TCP listener on loopback that counts accepted connections and answers `200 {}`."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port = self._socket.getsockname()[1]
        self.connections = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(65536)
                    conn.sendall(OK_ANSWER)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._socket.close()


@pytest.fixture
def recorder():
    server = ConnectionRecorder()
    yield server
    server.stop()


@pytest.fixture
def rebinding():
    """REBINDING resolves to loopback and the metadata address; FRIENDLY to loopback only."""
    with outbound.lookup_answers({REBINDING: ["127.0.0.1", METADATA], FRIENDLY: ["127.0.0.1"]}):
        yield


# --- The policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 spelling of the metadata address
        "http://[2002:a9fe:a9fe::1]/",  # 6to4 spelling
        "http://100.100.100.200/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0:8080/",
        "http://0.1.2.3/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://[fe80::1]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/",
        "http://user:pw@127.0.0.1/",
    ],
)
def test_the_policy_refuses_denied_networks_and_other_schemes(url):
    with pytest.raises(outbound.OutboundRefused):
        outbound.check_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000", "http://10.0.0.5:8080/jwks", "https://[::1]:8443"])
def test_loopback_and_private_addresses_are_allowed_by_default(url):
    outbound.check_url(url)


def test_loopback_is_refused_once_the_env_setting_lists_it(settings):
    settings.UPSTREAM_DENY_NETWORKS = [*settings.UPSTREAM_DENY_NETWORKS, "127.0.0.0/8"]

    with pytest.raises(outbound.OutboundRefused, match="denied network"):
        outbound.check_url("http://127.0.0.1:9000")


def test_a_name_is_judged_by_every_address_it_resolves_to(rebinding):
    outbound.check_url(f"http://{FRIENDLY}:9000")
    with pytest.raises(outbound.OutboundRefused, match=METADATA):
        outbound.check_url(f"http://{REBINDING}:9000")


def test_the_lookup_stub_really_dials_what_it_answers(rebinding, recorder):
    """The control for every zero below: a name the stub maps to loopback reaches the recorder."""
    with outbound.outbound_client(timeout=2) as client:
        assert client.get(recorder.url(FRIENDLY)).status_code == 200

    assert recorder.connections == 1


# --- At save: the management API names the field; the admin shows the error ----------------


@pytest.mark.parametrize("field", ["jwks_url", "introspection_url"])
@pytest.mark.parametrize("url", ["http://169.254.169.254/", f"http://{REBINDING}/jwks", "ftp://idp.example/"])
def test_api_refuses_an_identity_provider_url_in_a_denied_network(staff_client, rebinding, field, url):
    body = {"name": "Evil", "issuer": "https://evil.example", "client_id": "gateway", field: url}

    response = staff_client.post(f"{MANAGE}/identity-providers/", body, format="json")

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert field in errors
    assert not IdentityProvider.objects.exists()


def test_api_still_accepts_an_identity_provider_on_loopback(staff_client):
    body = {"name": "Local", "issuer": "https://local.example", "jwks_url": "http://127.0.0.1:9300/jwks"}

    response = staff_client.post(f"{MANAGE}/identity-providers/", body, format="json")

    assert response.status_code == 201, response.content
    assert IdentityProvider.objects.get().jwks_url == "http://127.0.0.1:9300/jwks"


def test_admin_form_refuses_a_jwks_url_at_the_metadata_address(admin_client):
    response = admin_client.post(
        admin_url(IdentityProvider, "add"),
        {
            "name": "Evil", "issuer": "https://evil.example", "enabled": "on",
            "jwks_url": "http://169.254.169.254/latest/meta-data", "algorithms": '["RS256"]',
            "tenant_claim": "tenant", "roles_claim": "roles", "scopes_claim": "scope",
            "role_mapping": "{}",
        },
    )  # fmt: skip

    assert response.status_code == 200
    assert "is in a denied network" in response.content.decode()
    assert not IdentityProvider.objects.exists()


def test_api_refuses_a_target_whose_name_resolves_to_the_metadata_address(staff_client, rebinding):
    body = {
        "name": "Sales", "slug": "sales", "path_prefix": "/api/v1/sales",
        "openapi_path": "/openapi.json", "targets": [{"url": f"http://{REBINDING}:9001"}],
    }  # fmt: skip

    response = staff_client.post(f"{MANAGE}/services/", body, format="json")

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert METADATA in errors["targets"]["0"]["url"][0]
    assert not Service.objects.exists()


def test_admin_refuses_a_target_whose_name_resolves_to_the_metadata_address(admin_client, rebinding):
    service = Service.objects.create(name="Sales", slug="sales", path_prefix="/api/v1/sales")

    response = admin_client.post(
        admin_url(Target, "add"),
        {"service": service.pk, "url": f"http://{REBINDING}:9001", "weight": "100", "enabled": "on"},
    )

    assert response.status_code == 200
    assert f"{REBINDING} is in a denied network" in response.content.decode()
    assert not Target.objects.exists()


def test_api_refuses_a_webhook_whose_name_resolves_to_the_metadata_address(staff_client, tenant, rebinding):
    response = staff_client.post(
        f"{MANAGE}/notification-rules/",
        {"tenant": "acme", "channel": "webhook", "destination": f"http://{REBINDING}/hook"},
        format="json",
    )

    errors = assert_problem(response, 400, "VALIDATION_ERROR")["errors"]
    assert list(errors) == ["destination"]
    assert not NotificationRule.objects.exists()


# --- At connect time: a name that rebinds after the save is never dialled ------------------


def test_upstream_clients_refuse_a_rebinding_target(rebinding, recorder):
    from proxy.upstream import ConnectFailure, create_upstream_client

    async def send(kind: str):
        client = create_upstream_client(kind, 4)
        try:
            await client.send("GET", f"{recorder.url(REBINDING)}/x", [], None, 2.0, 2.0)
        finally:
            await client.close()

    for kind in ("aiohttp", "httpx", "pyreqwest"):
        with pytest.raises(ConnectFailure, match="denied network"):
            asyncio.run(send(kind))
    assert recorder.connections == 0


def test_the_data_plane_answers_502_for_a_target_that_rebinds(make_service, gateway, recorder):
    with outbound.lookup_answers({REBINDING: ["127.0.0.1"]}):
        make_service("sales", targets=[recorder.url(REBINDING)])  # valid when saved
    with outbound.lookup_answers({REBINDING: ["127.0.0.1", METADATA]}):
        gateway.sync()
        response = httpx.get(f"{gateway.url}/api/v1/sales/orders", timeout=10)

    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert recorder.connections == 0


def test_the_data_plane_refuses_a_loopback_target_once_loopback_is_denied(
    make_service, gateway, recorder, settings
):
    make_service("sales", targets=[recorder.url()])
    gateway.sync()
    settings.UPSTREAM_DENY_NETWORKS = [*settings.UPSTREAM_DENY_NETWORKS, "127.0.0.0/8"]

    response = httpx.get(f"{gateway.url}/api/v1/sales/orders", timeout=10)

    assert response.status_code == 502
    assert recorder.connections == 0


def test_health_check_of_a_rebinding_target_fails_without_dialling(db, rebinding, recorder):
    from registry.health import check_targets_now

    service = Service.objects.create(name="Sales", slug="sales", path_prefix="/api/v1/sales")
    target = Target.objects.create(service=service, url=recorder.url(FRIENDLY))
    Target.objects.filter(pk=target.pk).update(url=recorder.url(REBINDING))  # DNS moved since

    [result] = check_targets_now(Target.objects.filter(pk=target.pk))

    assert not result.ok
    assert "outbound guard" in result.error and METADATA in result.error
    assert recorder.connections == 0


def test_openapi_document_of_a_rebinding_target_is_not_fetched(rebinding, recorder):
    from registry.apidocs.documents import DocSource, fetch_documents

    source = DocSource(
        slug="sales", name="Sales", description="", prefix="/api/v1/sales", upstream_path="",
        openapi_path="/openapi.json", target_urls=(recorder.url(REBINDING),),
    )  # fmt: skip

    [result] = asyncio.run(fetch_documents([source]))

    assert result.document is None and result.error == "unreachable (ConnectError)"
    assert recorder.connections == 0


def _provider_entry(**fields):
    from proxy.snapshot import IdentityProviderEntry

    values = {
        "id": 1, "issuer": ISSUER, "jwks_url": "", "introspection_url": "", "client_id": "gateway",
        "client_secret": "s", "audience": "", "algorithms": ("RS256",), "tenant_claim": "org",
        "default_tenant": None, "roles_claim": "roles", "scopes_claim": "scope", "role_mapping": {},
    }  # fmt: skip
    return IdentityProviderEntry(**{**values, **fields})


def _verify(entry, token: str):
    from types import SimpleNamespace

    from proxy.idp import ExternalTokenVerifier
    from proxy.snapshot import Snapshot

    async def run():
        snapshot = Snapshot(version=1, identity_providers={entry.issuer: entry}, loaded=True)
        verifier = ExternalTokenVerifier(SimpleNamespace(snapshot=snapshot), own_issuer="gateway-own")
        try:
            return await verifier.verification_for(token)
        finally:
            await verifier.close()

    return asyncio.run(run())


def test_jwks_and_introspection_urls_that_rebind_are_not_fetched(rebinding, recorder, signing_key):
    jwks = _provider_entry(jwks_url=f"{recorder.url(REBINDING)}/jwks")
    introspecting = _provider_entry(introspection_url=f"{recorder.url(REBINDING)}/introspect")

    assert _verify(jwks, signing_key.sign(claims())) is None
    assert _verify(introspecting, "an-opaque-token") is None
    assert recorder.connections == 0


def test_a_webhook_that_rebinds_after_saving_is_not_delivered(db, tenant, rebinding, recorder):
    from alerts.models import Alert
    from alerts.notifications import DeliveryFailed, deliver

    rule = NotificationRule.objects.create(
        tenant=tenant, channel="webhook", destination=recorder.url(FRIENDLY)
    )
    NotificationRule.objects.filter(pk=rule.pk).update(destination=recorder.url(REBINDING))
    alert = Alert.objects.create(tenant=tenant, severity="critical", message="oven on fire")
    delivery = NotificationDelivery.objects.create(rule=rule, alert=alert)

    with pytest.raises(DeliveryFailed, match=METADATA):
        deliver(delivery.pk)
    assert recorder.connections == 0


def test_whatsapp_api_url_that_rebinds_is_not_dialled(db, tenant, rebinding, recorder, settings):
    from alerts.models import Alert
    from alerts.notifications import DeliveryFailed, deliver

    settings.WHATSAPP_API_URL = f"{recorder.url(REBINDING)}/whatsapp/v17.0"
    rule = NotificationRule.objects.create(tenant=tenant, channel="whatsapp", destination="+34600111222")
    alert = Alert.objects.create(tenant=tenant, severity="critical", message="oven on fire")
    delivery = NotificationDelivery.objects.create(rule=rule, alert=alert)

    with pytest.raises(DeliveryFailed, match=METADATA):
        deliver(delivery.pk)
    assert recorder.connections == 0


def test_geocoder_url_that_rebinds_is_a_502_without_dialling(rebinding, recorder, settings):
    from gateway_project.ops.geocode import GeocodeProblem, GeocodeSearch, fetch_places

    settings.NOMINATIM_URL = recorder.url(REBINDING)

    with pytest.raises(GeocodeProblem) as refused:
        fetch_places(GeocodeSearch("Madrid"))

    assert refused.value.code == "BAD_GATEWAY"
    assert recorder.connections == 0


# --- A token's claims never choose what the gateway fetches ---------------------------------


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return SigningKey("guard-1", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_forged_token_naming_an_unregistered_url_triggers_no_fetch(
    make_service, gateway, recorder, signing_key
):
    registered = ConnectionRecorder()
    try:
        make_service("sales", targets=[registered.url()], auth_required=True)
        IdentityProvider.objects.create(
            name="SSO", issuer=ISSUER, jwks_url=f"{registered.url()}/jwks", audience=AUDIENCE,
            tenant_claim="org", role_mapping=ROLE_MAPPING,
        )  # fmt: skip
        gateway.sync()
        attacker = recorder.url()
        forged = [
            # iss names the attacker's URL (as an issuer and as a discovery base)
            signing_key.sign(claims(iss=attacker), jku=f"{attacker}/jwks", x5u=f"{attacker}/cert"),
            signing_key.sign(claims(iss=f"{attacker}/.well-known/openid-configuration")),
            # a registered issuer, with key-location headers naming the attacker
            signing_key.sign(claims(), jku=f"{attacker}/jwks", x5u=f"{attacker}/cert"),
            f"{_b64({'alg': 'none', 'jku': attacker})}.{_b64(claims(iss=attacker))}.",
        ]

        statuses = [
            httpx.get(
                f"{gateway.url}/api/v1/sales/orders", headers={"Authorization": f"Bearer {token}"}, timeout=10
            ).status_code
            for token in forged
        ]
    finally:
        registered.stop()

    assert statuses == [401, 401, 401, 401]
    time.sleep(0.2)  # a fetch started in the background would have connected by now
    assert recorder.connections == 0


def test_a_provider_whose_url_was_poisoned_triggers_no_fetch(make_service, gateway, recorder, signing_key):
    make_service("sales", targets=[recorder.url()], auth_required=True)
    provider = IdentityProvider.objects.create(
        name="SSO", issuer=ISSUER, jwks_url="http://127.0.0.1:1/jwks", audience=AUDIENCE,
        tenant_claim="org", role_mapping=ROLE_MAPPING,
    )  # fmt: skip
    # Written around validation (raw SQL, an old row): the name now rebinds to the metadata address.
    IdentityProvider.objects.filter(pk=provider.pk).update(jwks_url=f"{recorder.url(REBINDING)}/jwks")

    with outbound.lookup_answers({REBINDING: ["127.0.0.1", METADATA]}):
        gateway.sync()
        response = httpx.get(
            f"{gateway.url}/api/v1/sales/orders",
            headers={"Authorization": f"Bearer {signing_key.sign(claims())}"},
            timeout=10,
        )

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "AUTH_ERROR"
    assert recorder.connections == 0


def test_validation_error_for_a_url_names_the_guard_reason():
    from registry.validators import validate_outbound_url

    with pytest.raises(ValidationError) as refused:
        validate_outbound_url("http://169.254.169.254/")

    assert refused.value.code == "denied_network"
    assert "denied network (169.254.169.254)" in refused.value.messages[0]
