"""Both OpenAPI documents the gateway publishes pass a validator nobody on this project wrote
(`openapi-spec-validator`): the management API's /api/schema/ and the merged /api/v1/docs.

A client generator that validates first (most do) refuses the whole document over one bad
default, so every schema fix here is checked the way such a generator checks it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

import pytest
import yaml
from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

from fixtures.demo_upstream import openapi_document
from registry.apidocs.documents import refresh_due_documents
from tests.live import Received, RecordingUpstream

MERGED_DOCUMENT_URL = "/api/v1/docs/openapi.json"
MANAGEMENT_SCHEMA_URL = "/api/schema/"

# A Swagger 2.0 service with an upload (formData `file`) and a binary download.
FILES_SWAGGER_2 = {
    "swagger": "2.0",
    "info": {"title": "Files", "version": "1"},
    "basePath": "/v1",
    "paths": {
        "/files": {
            "post": {
                "operationId": "upload",
                "consumes": ["multipart/form-data"],
                "parameters": [
                    {"in": "formData", "name": "file", "type": "file", "required": True},
                    {"in": "query", "name": "tags", "type": "array", "items": {"type": "string"}},
                ],
                "responses": {"201": {"description": "Stored", "schema": {"$ref": "#/definitions/File"}}},
            },
            "get": {
                "operationId": "download",
                "produces": ["application/octet-stream"],
                "responses": {"200": {"description": "The bytes", "schema": {"type": "file"}}},
            },
        }
    },
    "definitions": {"File": {"type": "object", "properties": {"id": {"type": "integer"}}}},
    "securityDefinitions": {"basic": {"type": "basic"}},
    "security": [{"basic": []}],
}

# 3.0 only: `nullable` and boolean exclusive bounds, a property named like a keyword.
LEDGER_30 = {
    "openapi": "3.0.3",
    "info": {"title": "Ledger", "version": "1"},
    "paths": {
        "/entries": {
            "get": {
                "operationId": "list",
                "responses": {
                    "200": {
                        "description": "Entries",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Entry"}}},
                    }
                },
            }
        }
    },
    "components": {
        "schemas": {
            "Entry": {
                "type": "object",
                "properties": {
                    "amount": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                    "note": {"type": "string", "nullable": True},
                    "kind": {"type": "string", "enum": ["debit", "credit"], "nullable": True},
                    "default": {"type": "integer", "maximum": 9, "exclusiveMaximum": False},
                },
                "example": {"nullable": True, "exclusiveMinimum": True},
            }
        }
    },
}

# 3.1 only: type lists and numeric exclusive bounds.
METERS_31 = {
    "openapi": "3.1.0",
    "info": {"title": "Meters", "version": "1"},
    "paths": {
        "/readings": {
            "get": {
                "operationId": "list",
                "responses": {
                    "200": {
                        "description": "Readings",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "value": {"type": "number", "exclusiveMinimum": 0},
                                        "unit": {"type": ["string", "null"]},
                                    },
                                }
                            }
                        },
                    }
                },
            }
        }
    },
}


def spec_errors(document: dict) -> list[str]:
    """Every complaint of the validator for the document's own OpenAPI version."""
    validator = OpenAPIV31SpecValidator if document["openapi"].startswith("3.1") else OpenAPIV30SpecValidator
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator(document).iter_errors()
    ]


# --- the management API ------------------------------------------------------------------------


@pytest.fixture
def management_schema(client, db) -> dict:
    response = client.get(MANAGEMENT_SCHEMA_URL, {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_the_management_schema_passes_openapi_spec_validator(management_schema):
    assert spec_errors(management_schema) == []


def test_the_yaml_form_of_the_management_schema_passes_too(client, db):
    # The schema URL answers YAML by default: what `openapi-generator -i URL` downloads.
    response = client.get(MANAGEMENT_SCHEMA_URL)

    assert response.status_code == 200
    assert spec_errors(yaml.safe_load(response.content)) == []


def test_a_blank_allowed_pattern_field_keeps_its_default_beside_the_alternatives(management_schema):
    # The field the validator first refused: "" against ^[-a-zA-Z0-9_]+$.
    service = management_schema["components"]["schemas"]["PublishAlertRequest"]["properties"]["service"]

    assert service["default"] == ""
    assert all("default" not in branch for branch in service["oneOf"])
    assert {"type": "string", "maxLength": 0} in service["oneOf"]


def test_no_request_body_repeats_one_schema_under_several_media_types(management_schema):
    # A generated client sends the last of several types given one schema: multipart, which
    # cannot carry a service's nested targets. JSON for the management API, a form for OAuth;
    # different schemas per type (YAML text or a JSON object) are a real choice and stay.
    bodies = {
        (method, path): operation["requestBody"]["content"]
        for path, item in management_schema["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "requestBody" in operation
    }
    repeated = {
        operation: list(content)
        for operation, content in bodies.items()
        if len({json.dumps(media["schema"], sort_keys=True) for media in content.values()}) < len(content)
    }

    assert bodies and repeated == {}
    assert list(bodies[("post", "/api/manage/services/")]) == ["application/json"]
    assert list(bodies[("post", "/api/v1/auth/token")]) == ["application/x-www-form-urlencoded"]


# --- the merged /api/v1/docs document --------------------------------------------------------


@dataclass
class DocumentsUpstream(RecordingUpstream):
    """A loopback upstream that answers GET /<slug>.json with that service's document."""

    documents: dict[str, dict] = field(default_factory=dict)

    async def _handle(self, request):
        from aiohttp import web

        slug = request.path.strip("/").removesuffix(".json")
        if request.path.endswith(".json") and slug in self.documents:
            with self._lock:
                self.requests.append(Received("GET", request.path, "", {}, [], b"", self.port))
            return web.json_response(self.documents[slug])
        return await super()._handle(request)


@pytest.fixture
def serve_documents(db):
    """Register one service per document, each with a target on a real loopback upstream."""
    from registry.models import Service, Target

    servers = []

    def serve(documents: dict[str, dict], upstream_paths: dict[str, str] | None = None):
        server = DocumentsUpstream(documents=copy.deepcopy(documents)).start()
        servers.append(server)
        for slug in documents:
            service = Service.objects.create(
                name=slug.title(),
                slug=slug,
                path_prefix=f"/api/v1/{slug}",
                upstream_path=(upstream_paths or {}).get(slug, ""),
                openapi_path=f"/{slug}.json",
                auth_required=False,
            )
            Target.objects.create(service=service, url=server.url)
        return server

    yield serve
    for server in servers:
        server.stop()


def merged_from_the_gateway(client) -> dict:
    """What a browser or a generator downloads, after one health sweep's refresh."""
    refresh_due_documents()
    response = client.get(MERGED_DOCUMENT_URL)
    assert response.status_code == 200
    return json.loads(response.content)


def test_the_merged_document_of_no_service_is_valid(client, db):
    document = merged_from_the_gateway(client)

    assert document["paths"] == {}
    assert spec_errors(document) == []


def test_the_demo_services_and_a_swagger_2_upload_merge_into_a_valid_document(client, serve_documents):
    serve_documents(
        {
            "sales": openapi_document("sales"),
            "training": openapi_document("training"),
            "files": FILES_SWAGGER_2,
        },
        upstream_paths={"files": "/v1"},
    )

    document = merged_from_the_gateway(client)

    assert {entry["slug"]: entry["status"] for entry in document["x-gateway-services"]} == {
        "sales": "ok",
        "training": "ok",
        "files": "ok",
    }
    assert spec_errors(document) == []
    upload = document["paths"]["/api/v1/files/files"]["post"]["requestBody"]["content"]
    assert upload["multipart/form-data"]["schema"]["properties"]["file"] == {
        "type": "string",
        "format": "binary",
    }
    download = document["paths"]["/api/v1/files/files"]["get"]["responses"]["200"]["content"]
    assert download["application/octet-stream"]["schema"] == {"type": "string", "format": "binary"}


def test_a_3_0_and_a_3_1_document_merge_into_valid_3_1(client, serve_documents):
    serve_documents({"ledger": LEDGER_30, "meters": METERS_31})

    document = merged_from_the_gateway(client)

    assert document["openapi"] == "3.1.0"
    assert spec_errors(document) == []
    entry = document["components"]["schemas"]["ledger.Entry"]
    # The 3.0 schema says the same in 3.1 terms; example data is left as it was.
    assert entry["properties"]["amount"] == {"type": "number", "exclusiveMinimum": 0}
    assert entry["properties"]["note"] == {"type": ["string", "null"]}
    assert entry["properties"]["kind"] == {"type": ["string", "null"], "enum": ["debit", "credit", None]}
    assert entry["properties"]["default"] == {"type": "integer", "maximum": 9}
    assert entry["example"] == {"nullable": True, "exclusiveMinimum": True}
