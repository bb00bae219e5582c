"""The built-in plugins on a service whose upstream serves an OpenAPI document, against a real
upstream on loopback: request-validator, mock and request-termination (SPEC section 19)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.registry.test_apidocs import OPENAPI_PATH, serve_document

JSON_TYPE = {"Content-Type": "application/json"}
ORDER_SCHEMA = {
    "type": "object",
    "required": ["sku", "quantity"],
    "properties": {
        "sku": {"type": "string"},
        "quantity": {"type": "integer", "minimum": 1},
        "size": {"type": "string", "enum": ["s", "m", "l"]},
        "note": {"type": "string", "nullable": True},
    },
}
# Refers to itself: validated through the document's registry instead of inlined.
CATEGORY_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "children": {"type": "array", "items": {"$ref": "#/components/schemas/Category"}},
    },
}
SHOP_DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Shop", "version": "1"},
    "paths": {
        "/orders": {
            "get": {
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    {"name": "X-Store", "in": "header", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "Orders",
                        "content": {"application/json": {"example": [{"sku": "A1", "quantity": 1}]}},
                    }
                },
            },
            "post": {
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}},
                },
                "responses": {
                    "201": {
                        "description": "Created",
                        "content": {"application/json": {"example": {"id": 7, "status": "placed"}}},
                    },
                    "400": {"description": "Invalid"},
                },
            },
        },
        "/categories": {
            "post": {
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Category"}}}
                },
                "responses": {"201": {"description": "Created"}},
            }
        },
        "/orders/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {
                "responses": {
                    "200": {
                        "description": "One order",
                        "content": {
                            "application/json": {
                                "examples": {"placed": {"value": {"id": 7, "sku": "A1", "quantity": 2}}}
                            }
                        },
                    },
                    "404": {"description": "Missing"},
                }
            },
        },
    },
    "components": {"schemas": {"Order": ORDER_SCHEMA, "Category": CATEGORY_SCHEMA}},
}


@pytest.fixture
def shop_upstream():
    server = serve_document(SHOP_DOCUMENT)
    yield server
    server.stop()


@pytest.fixture
def shop(make_service, shop_upstream):
    return make_service("shop", targets=[shop_upstream.url], openapi_path=OPENAPI_PATH, max_body_bytes=4096)


@pytest.fixture
def with_plugin(gateway, shop, configure):
    def enable(name: str, **config):
        configure(name, service="shop", config=config)
        gateway.sync()
        return f"{gateway.url}/api/v1/shop"

    return enable


def order_hits(upstream) -> list:
    return upstream.hits("/orders")


# --- request-validator -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "pointer", "message"),
    [
        ({"sku": "A1", "quantity": "two"}, "/body/quantity", '"two" is not of type "integer"'),
        ({"quantity": 1}, "/body/sku", '"sku" is a required property'),
        ({"sku": "A1", "quantity": 1, "size": "xl"}, "/body/size", '"xl" is not one of "s", "m" or "l"'),
        ({"sku": "A1", "quantity": 0}, "/body/quantity", "0 is less than the minimum of 1"),
    ],
    ids=["wrong-type", "missing-required", "unknown-enum", "below-minimum"],
)
def test_validator_refuses_a_bad_body_with_the_pointer(with_plugin, shop_upstream, body, pointer, message):
    base = with_plugin("request-validator")

    response = httpx.post(f"{base}/orders", json=body)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "INVALID_REQUEST"
    assert problem["errors"] == [{"pointer": pointer, "message": message}]
    assert order_hits(shop_upstream) == []


def test_validator_forwards_a_valid_body_unchanged(with_plugin, shop_upstream):
    base = with_plugin("request-validator")
    raw = b'{"sku": "A1",  "quantity": 2, "size": "m", "note": null}'

    response = httpx.post(f"{base}/orders", content=raw, headers={"Content-Type": "application/json"})

    assert response.status_code == 200
    (hit,) = order_hits(shop_upstream)
    assert (hit.method, hit.path, hit.body) == ("POST", "/orders", raw)


def test_validator_reads_a_chunked_body_and_still_forwards_it(with_plugin, shop_upstream):
    base = with_plugin("request-validator")
    raw = b'{"sku": "B2", "quantity": 5}'

    def chunks():
        yield raw[:10]
        yield raw[10:]

    response = httpx.post(f"{base}/orders", content=chunks(), headers={"Content-Type": "application/json"})

    assert response.status_code == 200
    assert order_hits(shop_upstream)[0].body == raw


def test_validator_reports_every_error(with_plugin):
    base = with_plugin("request-validator")

    response = httpx.post(f"{base}/orders", json={"quantity": "x", "size": "xl"})

    pointers = sorted(error["pointer"] for error in response.json()["errors"])
    assert pointers == ["/body/quantity", "/body/size", "/body/sku"]


@pytest.mark.parametrize(
    ("request_args", "pointer", "message"),
    [
        ({"content": b"{not json", "headers": JSON_TYPE}, "/body", "not valid JSON"),
        ({"content": b"sku=A1", "headers": {"Content-Type": "text/plain"}}, "/headers/content-type", "JSON"),
        ({}, "/body", "a request body is required"),
    ],
    ids=["malformed-json", "not-json", "missing-body"],
)
def test_validator_refuses_bodies_that_are_not_json(
    with_plugin, shop_upstream, request_args, pointer, message
):
    base = with_plugin("request-validator")

    response = httpx.post(f"{base}/orders", **request_args)

    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["pointer"] == pointer and message in error["message"]
    assert order_hits(shop_upstream) == []


@pytest.mark.parametrize(
    ("path", "headers", "pointer", "message"),
    [
        ("/orders?limit=0", {"X-Store": "madrid"}, "/query/limit", "0 is less than the minimum of 1"),
        ("/orders?limit=ten", {"X-Store": "madrid"}, "/query/limit", '"ten" is not of type "integer"'),
        ("/orders", {}, "/headers/X-Store", "the header parameter 'X-Store' is required"),
        ("/orders/abc", {}, "/path/id", '"abc" is not of type "integer"'),
    ],
)
def test_validator_checks_query_header_and_path_parameters(with_plugin, path, headers, pointer, message):
    base = with_plugin("request-validator")

    response = httpx.get(f"{base}{path}", headers=headers)

    assert response.status_code == 400
    assert response.json()["errors"] == [{"pointer": pointer, "message": message}]


def test_validator_follows_a_recursive_schema(with_plugin, shop_upstream):
    base = with_plugin("request-validator")

    bad = httpx.post(f"{base}/categories", json={"name": "bread", "children": [{"children": []}]})
    good = httpx.post(f"{base}/categories", json={"name": "bread", "children": [{"name": "rye"}]})

    assert bad.status_code == 400
    assert bad.json()["errors"] == [
        {"pointer": "/body/children/0/name", "message": '"name" is a required property'}
    ]
    assert good.status_code == 200
    assert len(shop_upstream.hits("/categories")) == 1


def test_a_schema_referring_outside_the_document_is_never_fetched(gateway, make_service, configure):
    document = json.loads(json.dumps(SHOP_DOCUMENT))
    tracker = serve_document({})  # what a fetch of the external $ref would reach
    external = {"$ref": f"{tracker.url}/schemas/order.json"}
    document["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"] = external
    server = serve_document(document)
    try:
        make_service("shop", targets=[server.url], openapi_path=OPENAPI_PATH)
        configure("request-validator", service="shop")
        gateway.sync()

        unchecked = httpx.post(f"{gateway.url}/api/v1/shop/orders", json={"anything": True})
        checked = httpx.get(f"{gateway.url}/api/v1/shop/orders?limit=0", headers={"X-Store": "m"})

        assert unchecked.status_code == 200  # that schema is left unchecked, with a warning
        assert checked.status_code == 400  # the rest of the document still is
        assert tracker.hits() == []
    finally:
        server.stop()
        tracker.stop()


def test_validator_lets_valid_parameters_and_undocumented_paths_through(with_plugin, shop_upstream):
    base = with_plugin("request-validator")

    assert httpx.get(f"{base}/orders?limit=10", headers={"X-Store": "madrid"}).status_code == 200
    assert httpx.get(f"{base}/orders/42").status_code == 200
    assert httpx.get(f"{base}/undocumented").status_code == 200
    assert [hit.path for hit in shop_upstream.hits() if hit.path != OPENAPI_PATH] == [
        "/orders",
        "/orders/42",
        "/undocumented",
    ]


def test_validator_can_refuse_undocumented_operations(with_plugin):
    base = with_plugin("request-validator", refuse_unknown_operations=True)

    response = httpx.delete(f"{base}/orders")

    assert response.status_code == 400
    assert response.json()["errors"][0]["pointer"] == "/path"


def test_validator_keeps_the_body_limit(with_plugin, shop_upstream):
    base = with_plugin("request-validator")
    body = json.dumps({"sku": "x" * 5000, "quantity": 1}).encode()

    def chunks():
        yield body[:3000]
        yield body[3000:]

    response = httpx.post(f"{base}/orders", content=chunks(), headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert order_hits(shop_upstream) == []


def test_validator_compiles_once_per_document(gateway, shop, configure, shop_upstream):
    from plugins.builtins import openapi

    def compiled_validators():
        chain = gateway.runtime.snapshot.match("/api/v1/shop").plugins.base
        (validator,) = [p for p in chain.access if p.name == "request-validator"]
        return validator.instance.compiled

    configure("request-validator", service="shop")
    gateway.sync()
    first = compiled_validators()
    fetched = len(shop_upstream.hits(OPENAPI_PATH))
    configure("mark-one", service="shop")  # a new config version, the same document
    gateway.sync()
    second = compiled_validators()

    assert gateway.runtime.snapshot.match("/api/v1/shop").plugins.base.access[1].name == "mark-one"
    assert first is not None and second is first
    assert fetched >= 1 and len(shop_upstream.hits(OPENAPI_PATH)) == fetched  # then from the cache
    assert openapi.operation_index(SHOP_DOCUMENT, "/api/v1/shop") is openapi.operation_index(
        SHOP_DOCUMENT, "/api/v1/shop"
    )


# --- mock ---------------------------------------------------------------------------------------


def test_mock_answers_with_the_documented_example_and_the_upstream_counts_no_hit(with_plugin, shop_upstream):
    base = with_plugin("mock")

    one = httpx.get(f"{base}/orders/7")
    created = httpx.post(f"{base}/orders", json={"sku": "A1", "quantity": 1})
    listed = httpx.get(f"{base}/orders")

    assert (one.status_code, one.json()) == (200, {"id": 7, "sku": "A1", "quantity": 2})
    assert one.headers["content-type"] == "application/json"
    assert one.headers["x-gateway-mock"] == "true"
    assert one.headers["x-request-id"]
    assert (created.status_code, created.json()) == (201, {"id": 7, "status": "placed"})
    assert (listed.status_code, listed.json()) == (200, [{"sku": "A1", "quantity": 1}])
    assert order_hits(shop_upstream) == []


def test_mock_answers_a_configured_status(with_plugin, shop_upstream):
    base = with_plugin("mock", status_code=404)

    response = httpx.get(f"{base}/orders/7")

    assert (response.status_code, response.content) == (404, b"")
    assert order_hits(shop_upstream) == []


def test_mock_refuses_an_undocumented_operation(with_plugin, shop_upstream):
    base = with_plugin("mock")

    response = httpx.delete(f"{base}/orders/7")

    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
    assert order_hits(shop_upstream) == []


def test_validator_runs_before_mock(with_plugin, configure, gateway):
    base = with_plugin("mock")
    configure("request-validator", service="shop")
    gateway.sync()

    assert httpx.post(f"{base}/orders", json={"quantity": 1}).status_code == 400
    assert httpx.post(f"{base}/orders", json={"sku": "A1", "quantity": 1}).status_code == 201


# --- request-termination ---------------------------------------------------------------------------


def test_termination_answers_the_configured_status_and_message(with_plugin, shop_upstream):
    base = with_plugin("request-termination", status_code=503, message="Back at 10:00 UTC.")

    response = httpx.post(f"{base}/orders", json={"sku": "A1", "quantity": 1})

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["code"], problem["detail"], problem["status"]) == (
        "REQUEST_TERMINATED",
        "Back at 10:00 UTC.",
        503,
    )
    assert order_hits(shop_upstream) == []


def test_termination_with_another_status_says_it_in_the_body_too(with_plugin, shop_upstream):
    base = with_plugin("request-termination", status_code=410, message="This API was retired.")

    response = httpx.get(f"{base}/orders/1")

    assert response.status_code == 410
    assert response.json()["status"] == 410
    assert response.json()["type"] == "/problems/request-terminated"
    assert order_hits(shop_upstream) == []


def test_a_slow_upload_under_the_validator_is_a_408_not_a_plugin_error(with_plugin, shop_upstream, settings):
    from tests.proxy.test_slow_body import _open_slow_body, _problem, _read_until_closed

    settings.REQUEST_BODY_TIMEOUT = 0.5  # the validator's own timeout_ms is 100 ms
    base = with_plugin("request-validator")
    port = int(base.split(":")[2].split("/")[0])
    head = b"POST /api/v1/shop/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: 40\r\n\r\n"

    response, _ = _read_until_closed(_open_slow_body(port, head, b'{"sku": '))

    status, _, problem = _problem(response)
    assert (status, problem["code"]) == (408, "REQUEST_TIMEOUT")
    assert order_hits(shop_upstream) == []


def test_a_changed_document_reaches_the_validator_after_the_sweep(with_plugin, shop_upstream):
    import time

    from django.core.cache import cache

    from registry.apidocs.documents import refresh_due_documents

    base = with_plugin("request-validator")
    assert httpx.post(f"{base}/orders", json={"sku": "A1", "quantity": 500}).status_code == 200
    stricter = json.loads(json.dumps(SHOP_DOCUMENT))
    stricter["components"]["schemas"]["Order"]["properties"]["quantity"]["maximum"] = 100
    shop_upstream.body = json.dumps(stricter).encode()
    cache.delete("apidocs:meta:shop")  # due now, as it is every REFRESH_INTERVAL_SECONDS

    assert refresh_due_documents() == ["shop"]

    deadline = time.monotonic() + 2
    while httpx.post(f"{base}/orders", json={"sku": "A1", "quantity": 500}).status_code != 400:
        assert time.monotonic() < deadline, "the new document never reached the validator"
        time.sleep(0.05)
