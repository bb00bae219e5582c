"""A service's OpenAPI document as the built-ins use it: its operations, found by method and
path, each with its parameters, body schema and example responses.

Built once per document version (keyed by the document's hash) and shared by every plugin
instance that serves the same document, so a config change that leaves the document alone
compiles nothing again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from threading import Lock

__all__ = ["Operation", "OperationIndex", "operation_index"]

_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_TEMPLATE = re.compile(r"\{([^}/]+)\}")
_CACHE_LIMIT = 64
_cache: dict[str, OperationIndex] = {}
_cache_lock = Lock()


@dataclass(frozen=True)
class Operation:
    """One method on one path template, with what the document says about it."""

    method: str
    template: str  # relative to the service's prefix, e.g. /orders/{id}
    pointer: str  # JSON pointer of the operation in the document
    parameters: tuple[tuple[dict, str], ...]  # (parameter, its JSON pointer), $refs followed
    request_body: dict | None
    request_body_pointer: str = ""
    responses: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OperationIndex:
    """Operations by method; templates tried literal-first, so /orders/new beats /orders/{id}."""

    document: dict
    routes: dict[str, tuple[tuple[re.Pattern, tuple[str, ...], Operation], ...]]

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation for a request path relative to the prefix, and its path parameters."""
        for pattern, names, operation in self.routes.get(method.lower(), ()):
            match = pattern.fullmatch(path)
            if match is not None:
                return operation, dict(zip(names, match.groups(), strict=True))
        return None


def operation_index(document: dict, prefix: str) -> OperationIndex:
    """The index of `document` (paths under `prefix`), built once per document version."""
    key = hashlib.sha256(json.dumps([prefix, document], sort_keys=True, default=str).encode()).hexdigest()
    with _cache_lock:
        index = _cache.get(key)
    if index is None:
        index = _build(document, prefix)
        with _cache_lock:
            if len(_cache) >= _CACHE_LIMIT:
                _cache.pop(next(iter(_cache)))
            _cache[key] = index
    return index


def _build(document: dict, prefix: str) -> OperationIndex:
    routes: dict[str, list] = {}
    for path, item in (document.get("paths") or {}).items():
        if not (isinstance(item, dict) and path.startswith(prefix)):
            continue
        template = path[len(prefix) :] or "/"
        item_pointer = f"/paths/{_escape(path)}"
        shared = _located(item.get("parameters"), f"{item_pointer}/parameters")
        for method in _HTTP_METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            entry = _operation(document, method, path, template, shared, operation)
            literal_length = len(_TEMPLATE.sub("", template))
            routes.setdefault(method, []).append((literal_length, *_pattern(template), entry))
    ordered = {
        method: tuple(entry[1:] for entry in sorted(entries, key=lambda e: -e[0]))
        for method, entries in routes.items()
    }
    return OperationIndex(document, ordered)


def _located(parameters, pointer: str) -> list[tuple[dict, str]]:
    if not isinstance(parameters, list):
        return []
    return [(p, f"{pointer}/{i}") for i, p in enumerate(parameters) if isinstance(p, dict)]


def _operation(document: dict, method: str, path: str, template: str, shared: list, operation: dict):
    pointer = f"/paths/{_escape(path)}/{method}"
    parameters = {}
    # An operation's own parameter overrides the path item's of the same name and place.
    for parameter, at in (*shared, *_located(operation.get("parameters"), f"{pointer}/parameters")):
        parameter, at = resolve_located(document, parameter, at)
        if isinstance(parameter, dict):
            parameters[(parameter.get("in"), str(parameter.get("name", "")).lower())] = (parameter, at)
    body, body_at = resolve_located(document, operation.get("requestBody"), f"{pointer}/requestBody")
    return Operation(
        method=method.upper(),
        template=template,
        pointer=pointer,
        parameters=tuple(parameters.values()),
        request_body=body if isinstance(body, dict) else None,
        request_body_pointer=body_at,
        responses=operation.get("responses") if isinstance(operation.get("responses"), dict) else {},
    )


def _pattern(template: str) -> tuple[re.Pattern, tuple[str, ...]]:
    """A regex for a path template, and the parameter names of its groups in order."""
    parts, names = [], []
    position = 0
    for match in _TEMPLATE.finditer(template):
        parts.append(re.escape(template[position : match.start()]))
        parts.append("([^/]+)")
        names.append(match.group(1))
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts)), tuple(names)


def resolve(document: dict, node):
    """Follow a local `$ref` (components) to what it names; other nodes as they are."""
    return resolve_located(document, node, "")[0]


def resolve_located(document: dict, node, pointer: str) -> tuple:
    """(node, its JSON pointer) with local `$ref`s followed; ({}, pointer) for nothing."""
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 16:
        pointer = node["$ref"].removeprefix("#")
        node = pointer_get(document, pointer)
        seen += 1
    return (node if node is not None else {}), pointer


def pointer_get(document, pointer: str):
    node = document
    for part in pointer.lstrip("/").split("/") if pointer else ():
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")
