"""`make run`'s /api/v1/docs is not empty: the demo fixture names each demo service's OpenAPI
document and the demo upstream (a real process on loopback) serves it, so the merged document
lists every demo service's paths under the gateway prefix."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from fixtures import demo_data
from fixtures.demo_ports import SERVICE_OFFSETS
from registry.apidocs.documents import refresh_due_documents
from tests.test_demo_upstream import (
    PORT_COUNT,
    START_TIMEOUT_SECONDS,
    free_port_block,
    read_lines,
    start_upstream,
    stop,
)


@pytest.fixture
def demo_upstream_base(monkeypatch) -> int:
    """The demo upstream program on a free block of loopback ports, as `make run` starts it."""
    base = free_port_block(PORT_COUNT)
    process = start_upstream(base)
    try:
        read_lines(process, PORT_COUNT, START_TIMEOUT_SECONDS)
        monkeypatch.setenv("DEMO_UPSTREAM_HOST", "127.0.0.1")
        monkeypatch.setenv("DEMO_UPSTREAM_BASE_PORT", str(base))
        yield base
    finally:
        stop(process)
        process.stdout.close()


def test_every_demo_service_names_its_openapi_document():
    assert {s["slug"]: s["openapi_path"] for s in demo_data.SERVICES} == {
        slug: demo_data.DEMO_OPENAPI_PATH for slug in SERVICE_OFFSETS
    }


def test_the_merged_docs_list_the_demo_services_paths(demo_upstream_base, client, db):
    # Given the demo fixture loaded against the running demo upstream
    call_command("load_demo", stdout=StringIO())

    # When the health sweep's docs refresh runs
    fetched = refresh_due_documents()

    # Then every demo service's document was fetched and its paths appear under its prefix
    assert sorted(fetched) == sorted(SERVICE_OFFSETS)
    document = client.get("/api/v1/docs/openapi.json").json()
    statuses = {s["slug"]: s["status"] for s in document["x-gateway-services"]}
    assert statuses == dict.fromkeys(SERVICE_OFFSETS, "ok")
    for slug in SERVICE_OFFSETS:
        assert f"/api/v1/{slug}/echo" in document["paths"]
        assert f"/api/v1/{slug}/items" in document["paths"]
    page = client.get("/api/v1/docs").content.decode()
    assert "Sales" in page and "Training" in page
