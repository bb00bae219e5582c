"""Aggregated API docs (SPEC section 15): each service's OpenAPI document fetched from a real
upstream on loopback, rewritten under the gateway's paths, merged and served at /api/v1/docs.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.urls import include, path

from gateway_project.urls import urlpatterns as gateway_urlpatterns
from registry.apidocs import documents as apidocs
from registry.apidocs.documents import DocSource, DocumentError, gateway_path, parse_document
from registry.health import health_sweep
from tests.live import Received, RecordingUpstream, free_port

# A test urlconf (ROOT_URLCONF points here) until gateway_project/urls.py includes the docs.
urlpatterns = [path("api/v1/", include("registry.apidocs.urls")), *gateway_urlpatterns]

OPENAPI_PATH = "/openapi.json"

SALES_DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Sales API", "version": "2.0"},
    "servers": [{"url": "http://sales.internal:8080"}],
    "security": [{"bearer": []}],
    "paths": {
        "/v2/orders": {
            "get": {
                "operationId": "list",
                "responses": {
                    "200": {
                        "description": "Orders",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Order"},
                                }
                            }
                        },
                    }
                },
            },
        },
        "/v2/orders/{id}": {
            "parameters": [{"$ref": "#/components/parameters/OrderId"}],
            "get": {
                "operationId": "get",
                "responses": {
                    "200": {
                        "description": "One order",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}},
                    },
                    "404": {"$ref": "#/components/responses/NotFound"},
                },
            },
        },
    },
    "components": {
        "schemas": {
            "Order": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "lines": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}},
                },
            },
            "Line": {"type": "object", "properties": {"sku": {"type": "string"}}},
        },
        "parameters": {
            "OrderId": {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
        },
        "responses": {"NotFound": {"description": "No such order"}},
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}

# Same operationIds and schema name as sales on purpose: the merge must keep both apart.
STOCK_DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "Stock API", "version": "1.0"},
    "servers": [{"url": "/stock-api"}],
    "paths": {
        "/items": {
            "get": {
                "operationId": "list",
                "tags": ["inventory"],
                "responses": {
                    "200": {
                        "description": "Stock",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}},
                    }
                },
            }
        },
        "/items/{sku}": {
            "get": {
                "operationId": "get",
                "parameters": [{"name": "sku", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "One item"}},
            }
        },
    },
    "components": {"schemas": {"Order": {"type": "object", "properties": {"restock": {"type": "boolean"}}}}},
}


@dataclass
class DocUpstream(RecordingUpstream):
    """A loopback upstream serving one fixed answer at /openapi.json (and echoing elsewhere)."""

    body: bytes = b""
    content_type: str = "application/json"
    status: int = 200

    async def _handle(self, request):
        from aiohttp import web

        if request.path != OPENAPI_PATH:
            return await super()._handle(request)
        with self._lock:
            self.requests.append(Received("GET", request.path, "", {}, [], b"", self.port))
        return web.Response(body=self.body, status=self.status, headers={"Content-Type": self.content_type})

    def document_hits(self) -> int:
        return len(self.hits(OPENAPI_PATH))


def serve_document(document, content_type: str = "application/json", status: int = 200) -> DocUpstream:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return DocUpstream(body=body, content_type=content_type, status=status).start()


def register(slug: str, url: str, **fields):
    from registry.models import Service, Target

    fields.setdefault("auth_required", False)
    fields.setdefault("openapi_path", OPENAPI_PATH)
    service = Service.objects.create(name=slug.title(), slug=slug, path_prefix=f"/api/v1/{slug}", **fields)
    Target.objects.create(service=service, url=url)
    return service


@contextmanager
def doc_upstreams():
    """Sales and stock serve good documents; broken serves an HTML error page."""
    servers = {
        "sales": serve_document(SALES_DOCUMENT),
        "stock": serve_document(STOCK_DOCUMENT),
        "broken": serve_document(b"<html>Internal error</html>", "text/html"),
    }
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def upstreams():
    with doc_upstreams() as servers:
        yield servers


@pytest.fixture
def services(db, upstreams):
    """Sales (upstream path /v2), stock (its document's server path /stock-api) and broken."""
    return {
        "sales": register("sales", upstreams["sales"].url, upstream_path="/v2"),
        "stock": register("stock", upstreams["stock"].url, upstream_path="/stock-api"),
        "broken": register("broken", upstreams["broken"].url),
    }


@pytest.fixture
def docs_urls(settings):
    settings.ROOT_URLCONF = __name__


def statuses(document: dict) -> dict[str, dict]:
    return {entry["slug"]: entry for entry in document["x-gateway-services"]}


def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(document: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def operations(document: dict) -> list[dict]:
    return [
        op for item in document["paths"].values() for key, op in item.items() if key in apidocs.HTTP_METHODS
    ]


def cached_merged() -> dict:
    return cache.get(apidocs.MERGED_KEY)["document"]


# --- refresh by the health sweep ---------------------------------------------------------------


def test_health_sweep_merges_every_document_under_the_gateway_paths(services, upstreams):
    # When: one beat tick.
    health_sweep()

    # Then: both documents are merged with their paths as clients call them here.
    merged = cached_merged()
    assert merged["openapi"] == "3.1.0"  # stock is 3.1: sales' 3.0 schemas lift to 3.1
    assert set(merged["paths"]) == {
        "/api/v1/sales/orders",
        "/api/v1/sales/orders/{id}",
        "/api/v1/stock/items",
        "/api/v1/stock/items/{sku}",
    }
    assert merged["servers"] == [{"url": "/", "description": "This gateway"}]
    # Every $ref resolves within the merged document, to the right service's component.
    assert all(resolve(merged, ref) is not None for ref in refs(merged))
    sales_order = merged["paths"]["/api/v1/sales/orders/{id}"]["get"]["responses"]["200"]
    assert sales_order["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/sales.Order"
    }
    assert "lines" in merged["components"]["schemas"]["sales.Order"]["properties"]
    assert "restock" in merged["components"]["schemas"]["stock.Order"]["properties"]
    # operationIds stay unique although both services use "list" and "get".
    ids = [op["operationId"] for op in operations(merged)]
    assert sorted(ids) == ["sales.get", "sales.list", "stock.get", "stock.list"]
    # Every operation is tagged with its service; sales' top-level security moved into operations.
    assert {op["operationId"]: op["tags"] for op in operations(merged)}["stock.list"] == ["Stock"]
    assert merged["paths"]["/api/v1/sales/orders"]["get"]["security"] == [{"sales.bearer": []}]
    assert "sales.bearer" in merged["components"]["securitySchemes"]
    assert [tag["name"] for tag in merged["tags"]] == ["Sales", "Stock"]
    # The broken document is marked with its error and skipped.
    status = statuses(merged)
    assert status["sales"]["status"] == status["stock"]["status"] == "ok"
    assert status["broken"]["status"] == "broken"
    assert status["broken"]["error"] == "not JSON (JSONDecodeError)"
    assert status["sales"]["fetched_at"]
    # No upstream address leaks: not the document's own servers, not the targets.
    text = json.dumps(merged)
    assert "sales.internal" not in text
    assert "127.0.0.1" not in text


def test_a_document_is_fetched_again_only_when_due(services, upstreams, monkeypatch):
    health_sweep()
    health_sweep()  # within the refresh window (and the broken retry window)
    assert [upstreams[name].document_hits() for name in ("sales", "stock", "broken")] == [1, 1, 1]

    monkeypatch.setattr(apidocs, "BROKEN_RETRY_SECONDS", 0)
    health_sweep()  # a broken document is retried sooner than a good one is refreshed
    assert [upstreams[name].document_hits() for name in ("sales", "stock", "broken")] == [1, 1, 2]

    monkeypatch.setattr(apidocs, "REFRESH_INTERVAL_SECONDS", 0)
    health_sweep()
    assert [upstreams[name].document_hits() for name in ("sales", "stock", "broken")] == [2, 2, 3]


def test_a_new_prefix_is_applied_at_once(services, upstreams):
    health_sweep()
    services["sales"].path_prefix = "/api/v1/orders-eu"
    services["sales"].save()

    health_sweep()

    assert upstreams["sales"].document_hits() == 2
    assert "/api/v1/orders-eu/orders/{id}" in cached_merged()["paths"]
    assert "/api/v1/sales/orders" not in cached_merged()["paths"]


def test_an_unreachable_target_is_marked_broken_and_skipped(services):
    register("gone", f"http://127.0.0.1:{free_port()}")  # nothing listens there

    apidocs.refresh_due_documents()

    status = statuses(cached_merged())
    assert status["gone"] == {
        **status["gone"],
        "status": "broken",
        "error": "unreachable (ConnectError)",
    }
    assert status["sales"]["status"] == "ok"
    assert "/api/v1/sales/orders" in cached_merged()["paths"]


def test_a_service_without_a_healthy_target_is_marked_broken(services):
    services["stock"].targets.update(healthy=False)

    apidocs.refresh_due_documents()

    assert statuses(cached_merged())["stock"]["error"] == "no enabled, healthy target"


def test_services_without_a_document_path_or_disabled_are_left_out(services):
    services["broken"].openapi_path = ""
    services["broken"].save()
    services["stock"].enabled = False
    services["stock"].save()

    apidocs.refresh_due_documents()

    assert list(statuses(cached_merged())) == ["sales"]


def test_a_docs_failure_never_breaks_the_health_sweep(services, monkeypatch):
    def explode():
        raise RuntimeError("docs are down")

    monkeypatch.setattr("registry.health.refresh_due_documents", explode)

    results = health_sweep()

    assert len(results) == 3 and all(result.ok for result in results)


# --- fetching limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "error"),
    [
        (lambda: serve_document(b"", "application/json", status=302), "HTTP 302"),
        (lambda: serve_document(b"{}", status=500), "HTTP 500"),
        (lambda: serve_document({"openapi": "3.0.0", "info": {}}), "no paths object"),
        (
            lambda: serve_document({"swagger": "1.2", "paths": {}}),
            "not an OpenAPI 3.x or Swagger 2.0 document",
        ),
        (lambda: serve_document(b"[1, 2]"), "not an OpenAPI document (not an object)"),
        (lambda: serve_document(b"x" * 4096), "larger than 1 KiB"),
    ],
)
def test_unusable_answers_are_reported(db, monkeypatch, upstream, error):
    monkeypatch.setattr(apidocs, "MAX_DOCUMENT_BYTES", 1024)
    server = upstream()
    try:
        register("odd", server.url)
        apidocs.refresh_due_documents()
    finally:
        server.stop()
    assert statuses(cached_merged())["odd"]["error"] == error


def test_a_yaml_document_is_read_when_the_content_type_says_so(db):
    yaml_body = b"""
openapi: 3.0.3
info: {title: Y, version: '1'}
paths:
  /ping:
    get: {operationId: ping}
"""
    server = serve_document(yaml_body, "application/yaml")
    try:
        register("yamlsvc", server.url)
        apidocs.refresh_due_documents()
    finally:
        server.stop()
    assert cached_merged()["paths"]["/api/v1/yamlsvc/ping"]["get"]["operationId"] == "yamlsvc.ping"


def test_yaml_aliases_are_refused():
    bomb = b"a: &a [x, x]\nb: &b [*a, *a]\nopenapi: 3.0.3\npaths: {}\n"
    with pytest.raises(DocumentError, match="not YAML"):
        parse_document(bomb, "application/x-yaml")


# --- rewriting -------------------------------------------------------------------------------


def source(prefix: str = "/api/v1/sales", upstream_path: str = "") -> DocSource:
    return DocSource("sales", "Sales", "", prefix, upstream_path, OPENAPI_PATH, ())


@pytest.mark.parametrize(
    ("upstream_path", "path", "expected"),
    [
        ("", "/orders", "/api/v1/sales/orders"),
        ("/v2", "/v2/orders", "/api/v1/sales/orders"),
        ("/v2", "/v2", "/api/v1/sales"),
        ("/v2", "/v20/orders", "/api/v1/sales/v20/orders"),  # a segment boundary, not a prefix
        ("/v2", "/orders", "/api/v1/sales/orders"),  # a document written relative to /v2
    ],
)
def test_gateway_path_inverts_the_upstream_rewrite(upstream_path, path, expected):
    assert gateway_path(source(upstream_path=upstream_path), path) == expected


def test_a_swagger_2_document_is_merged_as_openapi_3():
    swagger = {
        "swagger": "2.0",
        "basePath": "/v1",
        "paths": {
            "/pets": {
                "post": {
                    "operationId": "addPet",
                    "parameters": [
                        {
                            "in": "body",
                            "name": "pet",
                            "required": True,
                            "schema": {"$ref": "#/definitions/Pet"},
                        }
                    ],
                    "responses": {"201": {"description": "Created", "schema": {"$ref": "#/definitions/Pet"}}},
                },
                "get": {
                    "parameters": [{"in": "query", "name": "limit", "type": "integer"}],
                    "responses": {"200": {"description": "Pets"}},
                },
            }
        },
        "definitions": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "securityDefinitions": {"basic": {"type": "basic"}},
    }

    prepared = apidocs.prepare_document(swagger, source(upstream_path="/v1"))

    assert prepared["openapi"] == "3.0.3"
    post = prepared["paths"]["/api/v1/sales/pets"]["post"]
    assert post["requestBody"] == {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/sales.Pet"}}},
    }
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/sales.Pet"
    }
    get = prepared["paths"]["/api/v1/sales/pets"]["get"]
    assert get["parameters"] == [{"in": "query", "name": "limit", "schema": {"type": "integer"}}]
    assert prepared["components"]["securitySchemes"] == {"sales.basic": {"type": "http", "scheme": "basic"}}


def test_discriminator_mappings_follow_the_renamed_schemas():
    document = {
        "openapi": "3.0.3",
        "paths": {},
        "components": {
            "schemas": {
                "Pet": {
                    "discriminator": {
                        "propertyName": "kind",
                        "mapping": {"dog": "Dog", "cat": "#/components/schemas/Cat"},
                    }
                },
                "Dog": {"type": "object"},
                "Cat": {"type": "object"},
            }
        },
    }

    prepared = apidocs.prepare_document(document, source())

    assert prepared["components"]["schemas"]["sales.Pet"]["discriminator"]["mapping"] == {
        "dog": "#/components/schemas/sales.Dog",
        "cat": "#/components/schemas/sales.Cat",
    }


# --- the views -------------------------------------------------------------------------------


def test_the_merged_document_is_fetched_on_demand_when_nothing_is_cached(
    services, upstreams, client, docs_urls
):
    # Given: no sweep ran yet.
    response = client.get("/api/v1/docs/openapi.json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "/api/v1/stock/items" in response.json()["paths"]
    assert upstreams["sales"].document_hits() == 1

    # A second request is served from the cache.
    assert client.get("/api/v1/docs/openapi.json").status_code == 200
    assert upstreams["sales"].document_hits() == 1


def test_on_demand_refreshes_are_bounded_to_one_a_minute(services, upstreams, client, docs_urls):
    client.get("/api/v1/docs/openapi.json")
    # The cache loses everything but the on-demand marker (an eviction, a flushed Redis).
    cache.delete_many([apidocs.MERGED_KEY, *(f"apidocs:meta:{slug}" for slug in services)])

    document = client.get("/api/v1/docs/openapi.json").json()

    assert upstreams["sales"].document_hits() == 1
    assert {entry["status"] for entry in document["x-gateway-services"]} == {"missing"}
    assert document["paths"] == {}


def test_the_docs_page_lists_each_document_and_uses_only_local_assets(services, upstreams, client, docs_urls):
    health_sweep()

    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    page = response.content.decode()
    assert '<script src="/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js">' in page
    assert 'href="/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css"' in page
    assert 'src="http' not in page and 'href="http' not in page  # no CDN
    assert 'data-url="/api/v1/docs/openapi.json"' in page
    assert 'data-service="broken" data-status="broken"' in page
    assert "not JSON (JSONDecodeError)" in page
    assert 'data-service="sales" data-status="ok"' in page
    assert all(server.url not in page for server in upstreams.values())


def test_the_docs_path_with_a_slash_redirects(client, docs_urls):
    response = client.get("/api/v1/docs/")

    assert response.status_code == 302
    assert response["Location"] == "/api/v1/docs"
