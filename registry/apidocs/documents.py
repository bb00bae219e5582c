"""Aggregated API docs (SPEC section 15): each service's OpenAPI document, rewritten under
the gateway's paths and merged into one document served at /api/v1/docs.

The health sweep refreshes documents that are due (ok ones every REFRESH_INTERVAL_SECONDS,
broken ones every BROKEN_RETRY_SECONDS); results live in Django's cache (Redis when
configured), so every gateway instance serves the same merged document. A broken upstream
document is marked with its error and skipped: never fatal, never a reason to drop others.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.cache import cache

from gateway_project.core.outbound import async_outbound_client
from registry.config_version import bump_config_version
from registry.models import Service

__all__ = [
    "DocSource",
    "DocStatus",
    "DocumentError",
    "fetch_documents",
    "gateway_path",
    "load_sources",
    "merge_documents",
    "merged_document",
    "parse_document",
    "prepare_document",
    "rebuild_merged",
    "refresh_due_documents",
    "service_document",
]

logger = logging.getLogger("gateway.apidocs")

REFRESH_INTERVAL_SECONDS = 10 * 60
BROKEN_RETRY_SECONDS = 60
# A merged document older than this means no sweep shares our cache (e.g. `make run`
# without Redis, where Celery has its own in-process cache): requests refresh it instead.
STALE_AFTER_SECONDS = 2 * REFRESH_INTERVAL_SECONDS
ON_DEMAND_MIN_INTERVAL_SECONDS = 60
CACHE_TTL_SECONDS = 24 * 3600
FETCH_TIMEOUT_SECONDS = 3.0
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
MAX_PARALLEL_FETCHES = 20
USER_AGENT = "gateway-api-docs/1.0"
OPENAPI_30 = "3.0.3"
OPENAPI_31 = "3.1.0"

_KEY = "apidocs:"
MERGED_KEY = f"{_KEY}merged"
SIGNATURE_KEY = f"{_KEY}merged-signature"
ON_DEMAND_KEY = f"{_KEY}on-demand"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
COMPONENTS_REF = "#/components/"
YAML_TYPES = ("yaml", "yml")
YAML_SUFFIXES = (".yaml", ".yml")


class DocStatus(StrEnum):
    OK = "ok"
    BROKEN = "broken"
    MISSING = "missing"


class DocumentError(Exception):
    """A service's document cannot be used; the message is shown publicly on the docs page."""


@dataclass(frozen=True)
class DocSource:
    """What refreshing one service's document needs, read from the registry once per run."""

    slug: str
    name: str
    description: str
    prefix: str
    upstream_path: str
    openapi_path: str
    target_urls: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        """Changes whenever the rewritten document would: such a change makes it due at once."""
        return f"{self.prefix}|{self.upstream_path}|{self.openapi_path}"


@dataclass(frozen=True)
class FetchResult:
    slug: str
    document: dict | None
    error: str


# --- the registry ----------------------------------------------------------------------------


def load_sources() -> list[DocSource]:
    """Enabled services that publish a document, each with its enabled, healthy targets."""
    services = (
        Service.objects.filter(enabled=True)
        .exclude(openapi_path="")
        .prefetch_related("targets")
        .order_by("path_prefix")
    )
    return [_source(service) for service in services]


def _source(service: Service) -> DocSource:
    # Regular targets first: demo-only ones serve the same API, but only demo sessions.
    usable = [t for t in service.targets.all() if t.enabled and t.healthy]
    usable.sort(key=lambda t: (t.demo_only, t.pk))
    return DocSource(
        slug=service.slug,
        name=service.name,
        description=service.description,
        prefix=service.path_prefix,
        upstream_path=service.upstream_path.rstrip("/"),
        openapi_path=service.openapi_path,
        target_urls=tuple(t.url.rstrip("/") for t in usable),
    )


# --- fetching --------------------------------------------------------------------------------


async def fetch_documents(sources: list[DocSource]) -> list[FetchResult]:
    """Fetch and prepare every source's document concurrently; one failure touches no other."""
    gate = asyncio.Semaphore(MAX_PARALLEL_FETCHES)
    async with async_outbound_client(
        timeout=FETCH_TIMEOUT_SECONDS,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json, application/yaml"},
    ) as client:
        return await asyncio.gather(*(_fetch_one(client, gate, source) for source in sources))


async def _fetch_one(client: httpx.AsyncClient, gate: asyncio.Semaphore, source: DocSource):
    if not source.target_urls:
        return FetchResult(source.slug, None, "no enabled, healthy target")
    url = f"{source.target_urls[0]}/{source.openapi_path.lstrip('/')}"
    try:
        async with gate, asyncio.timeout(FETCH_TIMEOUT_SECONDS):
            body, content_type = await _download(client, url)
        if source.openapi_path.lower().endswith(YAML_SUFFIXES):
            content_type = "application/yaml"  # static file servers rarely name the YAML type
        document = prepare_document(parse_document(body, content_type), source)
        return FetchResult(source.slug, document, "")
    except DocumentError as exc:
        error = str(exc)
    except (TimeoutError, httpx.TimeoutException):
        error = f"timed out after {FETCH_TIMEOUT_SECONDS:g} s"
    except httpx.HTTPError as exc:
        # The exception text names the target's address: only its type is shown.
        error = f"unreachable ({type(exc).__name__})"
    except Exception:
        logger.exception("API document of %s could not be prepared", source.slug)
        error = "unusable document"
    return FetchResult(source.slug, None, error)


async def _download(client: httpx.AsyncClient, url: str) -> tuple[bytes, str]:
    """The body of a 200 answer, refused as soon as it passes MAX_DOCUMENT_BYTES."""
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            raise DocumentError(f"HTTP {response.status_code}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
            raise DocumentError(_too_large())
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise DocumentError(_too_large())
        return bytes(body), response.headers.get("content-type", "")


def _too_large() -> str:
    return f"larger than {MAX_DOCUMENT_BYTES // 1024} KiB"


# --- parsing and validating ------------------------------------------------------------------


def parse_document(body: bytes, content_type: str) -> dict:
    """JSON, or YAML when the content type says so and PyYAML is installed."""
    if any(kind in content_type.lower() for kind in YAML_TYPES):
        document = _parse_yaml(body)
    else:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise DocumentError(f"not JSON ({type(exc).__name__})") from None
    _validate(document)
    return document


def _parse_yaml(body: bytes):
    try:
        import yaml
    except ImportError:
        raise DocumentError("YAML document, but PyYAML is not installed") from None

    class NoAliasLoader(yaml.SafeLoader):
        # Aliases expand exponentially once serialized to JSON ("billion laughs").
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError("YAML aliases are not accepted")
            return super().compose_node(parent, index)

    try:
        # The JSON round trip turns YAML-only values (dates) into what JSON can carry.
        return json.loads(json.dumps(yaml.load(body, Loader=NoAliasLoader), default=str))
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise DocumentError(f"not YAML ({type(exc).__name__})") from None


def _validate(document) -> None:
    if not isinstance(document, dict):
        raise DocumentError("not an OpenAPI document (not an object)")
    version = document.get("openapi")
    if not (isinstance(version, str) and version.startswith("3.")) and document.get("swagger") != "2.0":
        raise DocumentError("not an OpenAPI 3.x or Swagger 2.0 document")
    if not isinstance(document.get("paths"), dict):
        raise DocumentError("no paths object")


# --- rewriting one document under the gateway ------------------------------------------------


def prepare_document(document: dict, source: DocSource) -> dict:
    """The parts of one service's document that merge: paths under the gateway prefix,
    components and operationIds prefixed by the slug (services reuse names), refs to match.
    """
    if document.get("swagger") == "2.0":
        document = _from_swagger2(document)
    base = _server_base_path(document)
    document = _map_refs(document, lambda ref: _prefixed_ref(ref, source.slug))
    security = document.get("security")
    paths = {
        gateway_path(source, base + path): _path_item(item, source, security)
        for path, item in document["paths"].items()
        if path.startswith("/") and isinstance(item, dict)
    }
    components = {
        kind: {f"{source.slug}.{name}": value for name, value in entries.items()}
        for kind, entries in (document.get("components") or {}).items()
        if isinstance(entries, dict) and not kind.startswith("x-")
    }
    info = document.get("info")
    title = str(info.get("title", "")) if isinstance(info, dict) else ""
    return {
        "openapi": document["openapi"],
        "title": title,
        "paths": paths,
        "components": components,
    }


def gateway_path(source: DocSource, upstream: str) -> str:
    """The gateway forwards <prefix><rest> as <upstream_path><rest>: this is the inverse."""
    rewrite = source.upstream_path
    if rewrite and (upstream == rewrite or upstream.startswith(rewrite + "/")):
        upstream = upstream[len(rewrite) :]
    return source.prefix + upstream


def _server_base_path(document: dict) -> str:
    """Paths are relative to the first server URL: its path is part of the upstream path."""
    servers = document.get("servers")
    if not (isinstance(servers, list) and servers and isinstance(servers[0], dict)):
        return ""
    url = str(servers[0].get("url", ""))
    for name, variable in (servers[0].get("variables") or {}).items():
        url = url.replace("{" + name + "}", str((variable or {}).get("default", "")))
    return urlsplit(url).path.rstrip("/")


def _path_item(item: dict, source: DocSource, security) -> dict:
    # Upstream servers would send "Try it out" past the gateway (and name internal hosts).
    rewritten = {key: value for key, value in item.items() if key != "servers"}
    for method in HTTP_METHODS & rewritten.keys():
        if isinstance(rewritten[method], dict):
            rewritten[method] = _operation(rewritten[method], source, security)
    return rewritten


def _operation(operation: dict, source: DocSource, security) -> dict:
    operation = {key: value for key, value in operation.items() if key != "servers"}
    operation["tags"] = [source.name]
    if isinstance(operation.get("operationId"), str):
        operation["operationId"] = f"{source.slug}.{operation['operationId']}"
    # Top-level security does not survive the merge: it moves into each operation.
    requirements = operation.get("security", security)
    if isinstance(requirements, list):
        operation["security"] = [
            {f"{source.slug}.{name}": scopes for name, scopes in requirement.items()}
            for requirement in requirements
            if isinstance(requirement, dict)
        ]
    return operation


def _prefixed_ref(ref: str, slug: str) -> str:
    """#/components/<kind>/<name>... -> #/components/<kind>/<slug>.<name>...; slugs have
    no dots, so the prefixed names of two services can never collide.
    """
    if ref.startswith(COMPONENTS_REF):
        kind, _, rest = ref[len(COMPONENTS_REF) :].partition("/")
        return f"{COMPONENTS_REF}{kind}/{slug}.{rest}"
    return ref  # external documents are left as they are


def _map_refs(node, rewrite: Callable[[str], str]):
    """A copy of node with every $ref (and discriminator mapping) passed through rewrite."""
    if isinstance(node, list):
        return [_map_refs(item, rewrite) for item in node]
    if not isinstance(node, dict):
        return node
    mapped = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            mapped[key] = rewrite(value)
        elif key == "discriminator" and isinstance(value, dict) and isinstance(value.get("mapping"), dict):
            mapping = {name: rewrite(_mapping_ref(target)) for name, target in value["mapping"].items()}
            mapped[key] = {**value, "mapping": mapping}
        else:
            mapped[key] = _map_refs(value, rewrite)
    return mapped


def _mapping_ref(target) -> str:
    """A discriminator mapping value is a schema name or a ref: names become refs."""
    target = str(target)
    return target if "/" in target or "#" in target else f"{COMPONENTS_REF}schemas/{target}"


# --- Swagger 2.0 -----------------------------------------------------------------------------

_SWAGGER2_REFS = {
    "#/definitions/": "#/components/schemas/",
    "#/parameters/": "#/components/parameters/",
    "#/responses/": "#/components/responses/",
}
_SWAGGER2_FLOWS = {
    "implicit": "implicit",
    "password": "password",
    "application": "clientCredentials",
    "accessCode": "authorizationCode",
}
_SWAGGER2_SCHEMA_KEYS = (
    "type",
    "format",
    "items",
    "enum",
    "default",
    "minimum",
    "maximum",
    "pattern",
)
_BODY_LOCATIONS = ("body", "formData")
_MULTIPART = "multipart/form-data"
_URLENCODED = "application/x-www-form-urlencoded"


def _from_swagger2(document: dict) -> dict:
    """A Swagger 2.0 document as OpenAPI 3.0, enough to merge it and render it."""
    consumes = document.get("consumes") or ["application/json"]
    produces = document.get("produces") or ["application/json"]
    shared = document.get("parameters") or {}
    paths = {
        path: _swagger2_path_item(item, shared, consumes, produces)
        for path, item in document["paths"].items()
        if isinstance(item, dict)
    }
    components = {
        "schemas": document.get("definitions") or {},
        "parameters": {
            name: _swagger2_parameter(p)
            for name, p in shared.items()
            if isinstance(p, dict) and p.get("in") not in _BODY_LOCATIONS
        },
        "responses": {
            n: _swagger2_response(r, produces) for n, r in (document.get("responses") or {}).items()
        },
        "securitySchemes": {
            n: _swagger2_security(s) for n, s in (document.get("securityDefinitions") or {}).items()
        },
    }
    converted = {
        "openapi": OPENAPI_30,
        "info": document.get("info") or {},
        "servers": [{"url": document.get("basePath") or "/"}],
        "paths": paths,
        "components": {kind: entries for kind, entries in components.items() if entries},
    }
    if "security" in document:
        converted["security"] = document["security"]
    return _map_refs(converted, _swagger2_ref)


def _swagger2_ref(ref: str) -> str:
    for old, new in _SWAGGER2_REFS.items():
        if ref.startswith(old):
            return new + ref[len(old) :]
    return ref


def _swagger2_path_item(item: dict, shared: dict, consumes: list, produces: list) -> dict:
    converted = {}
    for key, value in item.items():
        if key in HTTP_METHODS and isinstance(value, dict):
            converted[key] = _swagger2_operation(
                value, item.get("parameters") or [], shared, consumes, produces
            )
        elif key != "parameters":
            converted[key] = value
    return converted


def _swagger2_operation(operation: dict, inherited: list, shared: dict, consumes, produces) -> dict:
    parameters = [_swagger2_resolve(p, shared) for p in [*inherited, *(operation.get("parameters") or [])]]
    converted = {
        k: v for k, v in operation.items() if k not in ("parameters", "consumes", "produces", "responses")
    }
    converted["parameters"] = [
        _swagger2_parameter(p) for p in parameters if p.get("in") not in _BODY_LOCATIONS
    ]
    body = _swagger2_request_body(parameters, operation.get("consumes") or consumes)
    if body:
        converted["requestBody"] = body
    converted["responses"] = {
        code: _swagger2_response(r, operation.get("produces") or produces)
        for code, r in (operation.get("responses") or {}).items()
    }
    return converted


def _swagger2_resolve(parameter: dict, shared: dict) -> dict:
    """Body parameters move into requestBody, so a shared one must be inlined first."""
    ref = parameter.get("$ref", "") if isinstance(parameter, dict) else ""
    target = shared.get(ref.removeprefix("#/parameters/")) if ref.startswith("#/parameters/") else None
    return target if isinstance(target, dict) and target.get("in") in _BODY_LOCATIONS else parameter


def _swagger2_parameter(parameter: dict) -> dict:
    if "$ref" in parameter:
        return parameter
    schema = {key: parameter[key] for key in _SWAGGER2_SCHEMA_KEYS if key in parameter}
    kept = {k: parameter[k] for k in ("name", "in", "description", "required") if k in parameter}
    return {**kept, "schema": _swagger2_schema(schema) or {"type": "string"}}


def _swagger2_schema(schema):
    """Swagger 2.0's `file` type (uploads, downloads) is a binary string in OpenAPI 3."""
    if isinstance(schema, dict) and schema.get("type") == "file":
        return {**schema, "type": "string", "format": "binary"}
    return schema


def _swagger2_request_body(parameters: list, consumes: list) -> dict | None:
    for parameter in parameters:
        if parameter.get("in") == "body":
            content = {media: {"schema": parameter.get("schema") or {}} for media in consumes}
            return {"required": bool(parameter.get("required")), "content": content}
    form = [p for p in parameters if p.get("in") == "formData"]
    if not form:
        return None
    schema = {
        "type": "object",
        "properties": {p["name"]: _swagger2_parameter(p)["schema"] for p in form},
    }
    media = _MULTIPART if _MULTIPART in consumes else _URLENCODED
    return {"content": {media: {"schema": schema}}}


def _swagger2_response(response, produces: list):
    if not isinstance(response, dict) or "$ref" in response:
        return response
    converted = {"description": response.get("description", "")}
    if "schema" in response:
        schema = _swagger2_schema(response["schema"])
        converted["content"] = {media: {"schema": schema} for media in produces}
    if "headers" in response:
        converted["headers"] = {n: {"schema": h} for n, h in response["headers"].items()}
    return converted


def _swagger2_security(scheme: dict) -> dict:
    kind = scheme.get("type")
    if kind == "basic":
        return {"type": "http", "scheme": "basic"}
    if kind != "oauth2":
        return scheme
    flow = {k: scheme[k] for k in ("authorizationUrl", "tokenUrl") if k in scheme}
    flow["scopes"] = scheme.get("scopes") or {}
    return {"type": "oauth2", "flows": {_SWAGGER2_FLOWS.get(scheme.get("flow"), "implicit"): flow}}


# --- merging ---------------------------------------------------------------------------------


def merge_documents(sources: list[DocSource], metas: dict[str, dict], documents: dict[str, dict]) -> dict:
    """One OpenAPI document over every source; x-gateway-services says which ones made it."""
    paths, components, tags = {}, {}, []
    merged = [(source, documents[source.slug]) for source in sources if source.slug in documents]
    version = _merged_version({document["openapi"] for _, document in merged})
    for source, document in merged:
        if version == OPENAPI_31 and not document["openapi"].startswith("3.1"):
            document = _lifted_to_31(document)
        paths.update(document["paths"])
        for kind, entries in document["components"].items():
            components.setdefault(kind, {}).update(entries)
        tags.append({"name": source.name, "description": source.description or document["title"]})
    return {
        "openapi": version,
        "info": {
            "title": "Gateway APIs",
            "version": settings.GATEWAY_VERSION,
            "description": "Every registered service's API, as reached through the gateway.",
        },
        "servers": [{"url": "/", "description": "This gateway"}],
        "paths": paths,
        "components": components,
        "tags": tags,
        "x-gateway-services": [_service_status(s, metas.get(s.slug), documents) for s in sources],
    }


def _merged_version(versions: set[str]) -> str:
    """3.1 as soon as one document is 3.1: its schemas are not valid 3.0 ones (type lists,
    numeric exclusive bounds), while a 3.0 document lifts to 3.1 without loss.
    """
    return OPENAPI_31 if any(v.startswith("3.1") for v in versions) else OPENAPI_30


# Keys whose values are data (examples, defaults, enums), not schemas: never rewritten.
_DATA_KEYS = frozenset({"example", "examples", "default", "enum", "const", "x-gateway-services"})
# Keys whose values map names to schemas: a property may well be called "default".
_NAME_MAP_KEYS = frozenset({"properties", "patternProperties"})
_EXCLUSIVE_BOUNDS = (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum"))


def _lifted_to_31(node, names: bool = False):
    """A copy of a prepared 3.0 document whose schemas say the same in 3.1 terms: boolean
    exclusive bounds become numbers, `nullable` becomes a "null" type.
    """
    if isinstance(node, list):
        return [_lifted_to_31(item) for item in node]
    if not isinstance(node, dict):
        return node
    if names:
        return {name: _lifted_to_31(schema) for name, schema in node.items()}
    lifted = {
        key: value if key in _DATA_KEYS else _lifted_to_31(value, key in _NAME_MAP_KEYS)
        for key, value in node.items()
    }
    for exclusive, bound in _EXCLUSIVE_BOUNDS:
        # 3.0: `minimum: 0, exclusiveMinimum: true`; 3.1: `exclusiveMinimum: 0`.
        exclusive_flag = lifted.get(exclusive)
        if isinstance(exclusive_flag, bool):
            del lifted[exclusive]
            if exclusive_flag and bound in lifted:
                lifted[exclusive] = lifted.pop(bound)
    if isinstance(lifted.get("nullable"), bool) and isinstance(lifted.get("type"), str):
        _lift_nullable(lifted)
    return lifted


def _lift_nullable(schema: dict) -> None:
    """3.0: `type: string, nullable: true`; 3.1: `type: [string, "null"]` (and null in an enum)."""
    if not schema.pop("nullable"):
        return
    schema["type"] = [schema["type"], "null"]
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]


def _service_status(source: DocSource, meta: dict | None, documents: dict) -> dict:
    if meta is None or (meta["status"] == DocStatus.OK and source.slug not in documents):
        status, error, fetched_at = DocStatus.MISSING, "not fetched yet", None
    else:
        status, error, fetched_at = meta["status"], meta["error"], meta["fetched_at"]
    return {
        "slug": source.slug,
        "name": source.name,
        "prefix": source.prefix,
        "status": str(status),
        "error": error,
        "fetched_at": fetched_at,
    }


# --- the cache and the refresh ---------------------------------------------------------------


def _meta_key(slug: str) -> str:
    return f"{_KEY}meta:{slug}"


def _document_key(slug: str) -> str:
    return f"{_KEY}document:{slug}"


def _is_due(source: DocSource, meta: dict | None, now: float) -> bool:
    if meta is None or meta.get("fingerprint") != source.fingerprint:
        return True
    wait = REFRESH_INTERVAL_SECONDS if meta["status"] == DocStatus.OK else BROKEN_RETRY_SECONDS
    return now - meta["checked_at"] >= wait


def _store(result: FetchResult, source: DocSource, now: float) -> None:
    status = DocStatus.OK if result.document is not None else DocStatus.BROKEN
    meta = {
        "status": str(status),
        "error": result.error,
        "checked_at": now,
        "fetched_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "fingerprint": source.fingerprint,
    }
    if result.document is not None:
        cache.set(_document_key(source.slug), result.document, CACHE_TTL_SECONDS)
    else:
        cache.delete(_document_key(source.slug))
        logger.warning("API document of %s is broken: %s", source.slug, result.error)
    cache.set(_meta_key(source.slug), meta, CACHE_TTL_SECONDS)


def _signature(sources: list[DocSource]) -> str:
    """Which services the merged document covers, and under which names and paths."""
    listed = [(s.slug, s.name, s.description, s.fingerprint) for s in sources]
    return hashlib.sha256(json.dumps(listed).encode()).hexdigest()


def refresh_due_documents() -> list[str]:
    """Fetch the documents that are due (called by every health sweep); rebuild the merged
    document when one was fetched or the set of services changed. Returns the slugs fetched.
    """
    sources = load_sources()
    now = time.time()
    metas = cache.get_many([_meta_key(s.slug) for s in sources])
    due = [s for s in sources if _is_due(s, metas.get(_meta_key(s.slug)), now)]
    if due:
        by_slug = {s.slug: s for s in due}
        before = cache.get_many([_document_key(s.slug) for s in due])
        results = asyncio.run(fetch_documents(due))
        for result in results:
            _store(result, by_slug[result.slug], now)
        _announce_new_documents(results, before)
    if due or cache.get(SIGNATURE_KEY) != _signature(sources) or not cache.has_key(MERGED_KEY):
        rebuild_merged(sources)
    return [s.slug for s in due]


def _announce_new_documents(results: list[FetchResult], before: dict) -> None:
    """A document that changed moves the config version (once per sweep), so every data plane
    recompiles what it built from it: the request-validator and mock plugins (SPEC section 19)."""
    if any(r.document is not None and r.document != before.get(_document_key(r.slug)) for r in results):
        bump_config_version()


def rebuild_merged(sources: list[DocSource]) -> dict:
    """Merge what the cache holds now (no fetching) and cache the result."""
    metas = cache.get_many([_meta_key(s.slug) for s in sources])
    metas = {key.removeprefix(f"{_KEY}meta:"): meta for key, meta in metas.items()}
    ok = [s.slug for s in sources if metas.get(s.slug, {}).get("status") == DocStatus.OK]
    documents = cache.get_many([_document_key(slug) for slug in ok])
    documents = {key.removeprefix(f"{_KEY}document:"): doc for key, doc in documents.items()}
    merged = merge_documents(sources, metas, documents)
    cache.set(MERGED_KEY, {"built_at": time.time(), "document": merged}, CACHE_TTL_SECONDS)
    cache.set(SIGNATURE_KEY, _signature(sources), CACHE_TTL_SECONDS)
    return merged


def merged_document() -> dict:
    """The merged document for a request: the cached one, or (when there is none or it is
    stale) refreshed on demand, at most once per ON_DEMAND_MIN_INTERVAL_SECONDS.
    """
    cached = cache.get(MERGED_KEY)
    if cached is not None and time.time() - cached["built_at"] < STALE_AFTER_SECONDS:
        return cached["document"]
    if cache.add(ON_DEMAND_KEY, 1, ON_DEMAND_MIN_INTERVAL_SECONDS):
        try:
            refresh_due_documents()
        except Exception:  # a stale document still beats an error page
            logger.exception("on-demand API docs refresh failed")
        cached = cache.get(MERGED_KEY) or cached
    return cached["document"] if cached is not None else rebuild_merged(load_sources())


def service_document(slug: str) -> dict | None:
    """One service's prepared document in OpenAPI 3.1 terms (JSON Schema 2020-12 schemas), as
    the sweep cached it; fetched now when the cache has none. For the request-validator and
    mock plugins (SPEC section 19), which compile it once per config version, off the loop."""
    document = cache.get(_document_key(slug))
    if document is None:
        document = _fetch_now(slug)
    if document is None:
        return None
    return document if document["openapi"].startswith("3.1") else _lifted_to_31(document)


def _fetch_now(slug: str) -> dict | None:
    try:
        asyncio.get_running_loop()
        return None  # never block an event loop on a fetch: the next sweep fills the cache
    except RuntimeError:
        pass
    sources = [s for s in load_sources() if s.slug == slug]
    if not sources:
        return None
    (result,) = asyncio.run(fetch_documents(sources))
    _store(result, sources[0], time.time())
    return result.document
