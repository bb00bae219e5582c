"""A developer reads the aggregated API docs in a real browser on a machine with no internet."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from tests.live import GatewayServer
from tests.registry.test_apidocs import doc_upstreams, register

pytestmark = pytest.mark.browser

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture
def upstreams():
    with doc_upstreams() as servers:
        yield servers


@pytest.fixture
def gateway(transactional_db, settings):
    settings.ROOT_URLCONF = "tests.registry.test_apidocs"  # includes registry.apidocs.urls
    settings.RATE_LIMIT_DEFAULT = ""
    server = GatewayServer().start()
    yield server
    server.stop()


def test_the_docs_render_every_service_offline(gateway, upstreams, page, artifacts_dir):
    from playwright.sync_api import expect

    # Given: two services with good documents and one whose document is garbage.
    register("sales", upstreams["sales"].url, upstream_path="/v2")
    register("stock", upstreams["stock"].url, upstream_path="/stock-api")
    register("broken", upstreams["broken"].url)
    # (No sweep has run: the first request fetches the documents on demand.)
    # And: a browser that can reach nothing but this machine.
    blocked: list[str] = []

    def offline(route):
        if urlsplit(route.request.url).hostname in LOOPBACK:
            return route.continue_()
        blocked.append(route.request.url)
        return route.abort()

    page.route("**/*", offline)

    # When
    page.goto(f"{gateway.url}/api/v1/docs")

    # Then: Swagger UI (from the gateway's own static files) shows both services' operations.
    for path in ("/api/v1/sales/orders/{id}", "/api/v1/stock/items"):
        expect(page.locator(f'.opblock-summary-path[data-path="{path}"]')).to_be_visible(timeout=15_000)
    expect(page.locator(".opblock-tag", has_text="Sales")).to_be_visible()
    # And: the status list marks the broken document with its error.
    broken = page.locator('[data-testid="apidocs-service"][data-service="broken"]')
    expect(broken).to_have_attribute("data-status", "broken")
    expect(broken).to_contain_text("not JSON")
    expect(page.locator('[data-service="sales"] .doc-status')).to_have_text("ok")
    page.screenshot(path=os.path.join(artifacts_dir, "api-docs.png"), full_page=True)
    assert blocked == []
    assert upstreams["sales"].document_hits() == 1  # the page fetched; openapi.json hit the cache
    assert upstreams["sales"].url not in page.content()
