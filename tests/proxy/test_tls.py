"""TLS (SPEC section 22): the gateway terminating TLS itself (minimum version, HSTS) and its
upstream connections (verified by default, a CA bundle and a client certificate per target).

A private CA, server and client certificates are made per test session with `cryptography`;
the upstream is a real aiohttp server on loopback speaking TLS, optionally requiring a
client certificate (mTLS).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.live import GatewayProcess, RecordingUpstream

# --- a private PKI ------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, key, issuer, issuer_key, *, ca: bool, server: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, certificate=None, key=None) -> Path:
    from cryptography.hazmat.primitives import serialization

    if certificate is not None:
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, other_key, server_key, client_key = _key(), _key(), _key(), _key()
    ca = _certificate(_name("gateway test CA"), ca_key, _name("gateway test CA"), ca_key, ca=True)
    other = _certificate(_name("another CA"), other_key, _name("another CA"), other_key, ca=True)
    server = _certificate(_name("127.0.0.1"), server_key, ca.subject, ca_key, ca=False, server=True)
    client = _certificate(_name("gateway client"), client_key, ca.subject, ca_key, ca=False)
    return Pki(
        ca=_write(directory / "ca.pem", ca),
        server_cert=_write(directory / "server.pem", server),
        server_key=_write(directory / "server.key", key=server_key),
        client_cert=_write(directory / "client.pem", client),
        client_key=_write(directory / "client.key", key=client_key),
        other_ca=_write(directory / "other-ca.pem", other),
    )


def server_context(pki: Pki, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return context


@pytest.fixture
def tls_upstream(pki):
    server = RecordingUpstream(ssl_context=server_context(pki)).start()
    yield server
    server.stop()


@pytest.fixture
def mtls_upstream(pki):
    server = RecordingUpstream(ssl_context=server_context(pki, require_client_cert=True)).start()
    yield server
    server.stop()


# --- upstream TLS ---------------------------------------------------------------------------


def test_a_private_ca_is_refused_by_default_and_trusted_with_the_targets_ca_bundle(
    make_service, tls_upstream, gateway, pki
):
    # Given: an https upstream whose certificate a private CA signed.
    service = make_service("sales", targets=[tls_upstream.url], retries=0)
    gateway.sync()

    # Then: verified against the system's bundle, the handshake fails: 502, nothing reached it.
    refused = httpx.get(f"{gateway.url}/api/v1/sales/x")
    assert refused.status_code == 502
    assert refused.headers["content-type"] == "application/problem+json"
    assert tls_upstream.hits() == []

    # When: the target names the CA bundle.
    target = service.targets.get()
    target.tls_ca_file = str(pki.ca)
    target.full_clean()
    target.save()
    gateway.sync()

    # Then: the request goes through over TLS.
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200
    assert len(tls_upstream.hits("/x")) == 1


def test_the_wrong_ca_bundle_is_refused(make_service, tls_upstream, gateway, pki):
    make_service("sales", targets=[{"url": tls_upstream.url, "tls_ca_file": str(pki.other_ca)}], retries=0)
    gateway.sync()
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 502
    assert tls_upstream.hits() == []


def test_mtls_sends_the_targets_client_certificate(make_service, mtls_upstream, gateway, pki):
    # Given: an upstream that requires a client certificate from the private CA.
    service = make_service(
        "sales", targets=[{"url": mtls_upstream.url, "tls_ca_file": str(pki.ca)}], retries=0
    )
    gateway.sync()

    # Then: without a client certificate the handshake is refused.
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 502

    # When: the target names its client certificate and key.
    target = service.targets.get()
    target.tls_client_cert_file, target.tls_client_key_file = str(pki.client_cert), str(pki.client_key)
    target.full_clean()
    target.save()
    gateway.sync()

    # Then: the upstream accepts the gateway.
    assert httpx.get(f"{gateway.url}/api/v1/sales/x").status_code == 200
    assert len(mtls_upstream.hits("/x")) == 1


def test_the_health_sweep_probes_a_target_with_its_own_tls_settings(make_service, mtls_upstream, pki):
    from registry.health import check_targets_now

    service = make_service(
        "sales",
        targets=[
            {
                "url": mtls_upstream.url,
                "tls_ca_file": str(pki.ca),
                "tls_client_cert_file": str(pki.client_cert),
                "tls_client_key_file": str(pki.client_key),
            }
        ],
    )
    (result,) = check_targets_now(list(service.targets.all()))
    assert result.ok, result.error


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"tls_ca_file": "/nonexistent/ca.pem"}, "tls_ca_file", "Not a readable PEM CA bundle"),
        ({"tls_client_key_file": "KEY"}, "tls_client_cert_file", "needs its client certificate"),
        ({"tls_client_cert_file": "CA", "tls_client_key_file": "KEY"}, "tls_client_key_file", "do not load"),
        ({"url": "http://127.0.0.1:9", "tls_ca_file": "CA"}, "tls_ca_file", "https:// targets only"),
    ],
)
def test_bad_tls_settings_are_a_400_naming_the_field_and_nothing_is_saved(
    staff_api, make_service, pki, fields, field, message
):
    from registry.models import Target

    files = {"CA": str(pki.ca), "KEY": str(pki.client_key)}
    make_service("sales")
    body = {"service": "sales", "url": "https://127.0.0.1:9443", **fields}
    body = {key: files.get(value, value) for key, value in body.items()}
    response = staff_api.post("/api/manage/targets/", body, format="json")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert message in str(response.json()["errors"][field])
    assert not Target.objects.exists()


@pytest.fixture
def staff_api(transactional_db):
    from rest_framework.test import APIClient

    from tenancy.models import User

    staff = User.objects.create_user("tls-staff", password="staff-pass-123", is_staff=True, is_superuser=True)
    client = APIClient()
    client.force_authenticate(staff)
    return client


# --- the gateway's own listener -------------------------------------------------------------


def _client_context(pki: Pki, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if maximum is not None:
        context.maximum_version = maximum
    return context


def _tls_gateway(pki: Pki, min_version: str, server: str = "uvicorn") -> GatewayProcess:
    return GatewayProcess(
        extra_env={
            "GATEWAY_TLS_CERT_FILE": str(pki.server_cert),
            "GATEWAY_TLS_KEY_FILE": str(pki.server_key),
            "GATEWAY_TLS_MIN_VERSION": min_version,
            "GATEWAY_SERVER": server,
        }
    ).start()


def test_the_gateway_terminates_tls_and_sends_hsts(make_service, upstream, pki, transactional_db):
    make_service("sales", targets=[upstream.url])
    gateway = _tls_gateway(pki, "TLSv1.2")
    try:
        with httpx.Client(verify=_client_context(pki)) as client:
            proxied = client.get(f"{gateway.url}/api/v1/sales/x")
            django_page = client.get(f"{gateway.url}/health")
        with httpx.Client(verify=_client_context(pki, ssl.TLSVersion.TLSv1_2)) as tls12:
            assert tls12.get(f"{gateway.url}/health/live").status_code == 200
    finally:
        gateway.stop()
    assert proxied.status_code == 200
    assert proxied.headers["strict-transport-security"].startswith("max-age=31536000")
    assert django_page.headers["strict-transport-security"].startswith("max-age=31536000")
    assert upstream.hits("/x")[0].headers.get("x-forwarded-proto") == "https"


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_tls13_minimum_refuses_a_tls12_client(pki, transactional_db, server):
    gateway = _tls_gateway(pki, "TLSv1.3", server)
    try:
        with httpx.Client(verify=_client_context(pki)) as client:
            assert client.get(f"{gateway.url}/health/live").status_code == 200
        with (
            httpx.Client(verify=_client_context(pki, ssl.TLSVersion.TLSv1_2)) as tls12,
            pytest.raises(httpx.ConnectError),
        ):
            tls12.get(f"{gateway.url}/health/live")
    finally:
        gateway.stop()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_TLS_CERT_FILE": "CERT"}, "must be set together"),
        ({"GATEWAY_TLS_CERT_FILE": "CERT", "GATEWAY_TLS_KEY_FILE": "CA"}, "do not load"),
        (
            {
                "GATEWAY_TLS_CERT_FILE": "CERT",
                "GATEWAY_TLS_KEY_FILE": "KEY",
                "GATEWAY_TLS_MIN_VERSION": "SSLv3",
            },
            "TLSv1.2, TLSv1.3",
        ),
    ],
)
def test_a_bad_tls_configuration_stops_the_server_with_a_clear_message(pki, env, message):
    files = {"CERT": str(pki.server_cert), "KEY": str(pki.server_key), "CA": str(pki.ca)}
    assert message in refusal_to_serve({k: files.get(v, v) for k, v in env.items()})


def refusal_to_serve(extra_env: dict[str, str]) -> str:
    """`serve` run with this environment: it must refuse to start (exit 2); what it said."""
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "gateway_project.serve", "--port", "0"],
        env={**os.environ, **extra_env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    return result.stderr
