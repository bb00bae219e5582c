"""A data plane fed by a file (GATEWAY_CONFIG_SOURCE=file://..., SPEC section 18): a real
process with no DATABASE_URL proxies the demo services to a real loopback upstream, follows
an edit of the file within 1 s, and keeps its last config when an edit is invalid."""

from __future__ import annotations

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from websockets.sync.client import connect

from tests.dataplane.process import DataPlaneProcess, metric_value, wait_until
from tests.declarative.conftest import export_text

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

FOLLOW_SECONDS = 1.0  # SPEC section 18: a changed file is served within 1 s
BOARD_SECONDS = 3.0


def demo_document_to(url: str) -> dict:
    """The demo registry with API-key hashes, every service's targets replaced by `url`."""
    document = yaml.safe_load(export_text("--include-key-hashes"))
    for service in document["services"]:
        service["targets"] = [{"url": url}]
    return document


def write(path, document: dict) -> None:
    """Write beside and rename, as an editor or a config-management tool does."""
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(yaml.safe_dump(document, sort_keys=True))
    staging.replace(path)


def public_keys_file(tmp_path) -> str:
    """The control plane's public key as a PEM file: what a file-fed data plane verifies with."""
    from tenancy.keys import key_ring

    pem = b"".join(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        for key in key_ring().verifying_keys.values()
    )
    path = tmp_path / "jwt-public.pem"
    path.write_bytes(pem)
    return str(path)


def owner_token() -> dict[str, str]:
    from tenancy.models import User
    from tenancy.tokens import tokens_for_user

    user = User.objects.get(username="owner@bakery-madrid.example")
    return {"Authorization": f"Bearer {tokens_for_user(user)['access']}"}


@pytest.fixture
def config_file(tmp_path):
    return tmp_path / "gateway.yaml"


def test_a_file_fed_data_plane_proxies_follows_edits_and_keeps_its_last_good_config(
    demo_key, upstream, second_upstream, config_file, tmp_path
):
    # Given the demo registry as a file pointing at a loopback upstream
    document = demo_document_to(upstream.url)
    write(config_file, document)
    bearer = owner_token()
    plane = DataPlaneProcess(
        tmp_path, f"file://{config_file}", JWT_PUBLIC_KEYS_FILE=public_keys_file(tmp_path)
    )
    with plane:
        # When a client calls a demo service with an API key (known only by its hash) and a JWT
        by_key = plane.get("/api/v1/sales/echo?x=1", headers={"X-API-Key": demo_key})
        by_token = plane.get("/api/v1/sales/echo", headers=bearer)
        anonymous = plane.get("/api/v1/sales/echo")
        # Then both reach the upstream with the verified identity; no credential, no forward
        assert by_key.status_code == 200, by_key.text
        assert by_token.status_code == 200, by_token.text
        assert anonymous.status_code == 401 and anonymous.json()["code"] == "AUTH_ERROR"
        hits = upstream.hits("/echo")
        assert [(h.path, h.query) for h in hits] == [("/echo", "x=1"), ("/echo", "")]
        assert {h.headers["x-tenant-id"] for h in hits} == {"bakery-madrid"}
        # and the WebSocket door works the same way
        with connect(
            plane.url.replace("http://", "ws://") + "/api/v1/training/ws", additional_headers=bearer
        ) as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
        assert upstream.hits("/ws")[0].headers["x-tenant-id"] == "bakery-madrid"
        # and health and metrics are served without a database
        ready = plane.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["database"] == "not_configured"
        assert plane.get("/health").json()["status"] == "ok"
        # a token sent to /health gets the public shape: staff accounts live on the control plane
        with_token = plane.get("/health", headers=bearer)
        assert with_token.status_code == 200 and "config_error" not in with_token.json()
        assert plane.get("/admin/").status_code == 404  # logins and staff pages: the control plane's
        metrics = plane.get("/metrics").text
        assert metric_value(metrics, "gateway_config_errors_total") == 0

        # When the file sends sales to the second upstream
        edited = demo_document_to(upstream.url)
        next(s for s in edited["services"] if s["slug"] == "sales")["targets"] = [
            {"url": second_upstream.url}
        ]
        write(config_file, edited)
        # Then requests follow within 1 s
        took = wait_until(
            lambda: (
                plane.get("/api/v1/sales/echo", headers={"X-API-Key": demo_key}).status_code == 200
                and second_upstream.hits("/echo")
            ),
            FOLLOW_SECONDS,
            f"routing did not follow the file within {FOLLOW_SECONDS}s",
        )
        print(f"file edit served after {took:.3f}s")
        version = metric_value(plane.get("/metrics").text, "gateway_config_version")

        # When an edit breaks one value
        broken = yaml.safe_load(config_file.read_text())
        broken["services"][0]["targets"][0]["url"] = "ftp://not-a-target"
        write(config_file, broken)
        wait_until(
            lambda: metric_value(plane.get("/metrics").text, "gateway_config_errors_total") == 1,
            FOLLOW_SECONDS * 2,
            "the invalid file was not counted",
        )
        # Then the last good config keeps serving, and health says the config is stale
        second_upstream.clear()
        assert plane.get("/api/v1/sales/echo", headers={"X-API-Key": demo_key}).status_code == 200
        assert len(second_upstream.hits("/echo")) == 1
        assert metric_value(plane.get("/metrics").text, "gateway_config_version") == version
        wait_until(  # the instance board carries it within its publishing interval
            lambda: plane.get("/health").json()["config_stale"] is True,
            BOARD_SECONDS,
            "health does not say the config is stale",
        )
        assert plane.get("/health").json()["status"] == "degraded"
        assert plane.get("/health/ready").status_code == 200  # still in rotation (SPEC 16)

        # When the file goes away, Then the data plane keeps serving and says its source is away
        config_file.unlink()
        wait_until(
            lambda: plane.get("/api/v1/status").json()["control_plane_reachable"] is False,
            FOLLOW_SECONDS * 2,
            "status does not say the file is unavailable",
        )
        assert plane.get("/api/v1/sales/echo", headers={"X-API-Key": demo_key}).status_code == 200
    # and nothing on its paths tried to reach a database
    assert "without a database" not in plane.log()
    assert "services[0].targets[0].url" in plane.log()
