"""Validation of what staff and developers register: prefixes, outbound URLs, lists, ranges.

Model fields carry these validators, so the admin, the management API and a config file
refuse the same values with the same messages (SPEC section 16, "config cannot be poisoned").
"""

from __future__ import annotations

import ipaddress
import math
import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator

from gateway_project.core.outbound import OutboundRefused, check_url
from registry.choices import Role, Scope
from registry.constants import (
    ALL_METHODS,
    HEADER_VALUE_MAX_LENGTH,
    LIST_ITEM_MAX_LENGTH,
    LIST_MAX_ITEMS,
    RESERVED_PREFIXES,
)

__all__ = [
    "clean_path_error",
    "in_range",
    "json_nulls_to_defaults",
    "normalize_prefix",
    "validate_cidr_list",
    "validate_finite",
    "validate_header_transforms",
    "validate_lowercase_slug",
    "validate_method_list",
    "validate_outbound_url",
    "validate_path_list",
    "validate_path_prefix",
    "validate_role_list",
    "validate_role_mapping",
    "validate_scope_list",
    "validate_slug_list",
    "validate_string_list",
    "validate_upstream_url",
    "validate_version_label",
]

_PREFIX_RE = re.compile(r"^/api/v[0-9]+(/[a-z0-9][a-z0-9._-]*)+$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@/-]*$")


_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

# Slugs name tenants and services in headers, metrics and logs: one spelling per name, so a
# case-insensitive twin (`Sales` next to `sales`) cannot exist.
validate_lowercase_slug = RegexValidator(
    _SLUG_RE,
    "Use lowercase letters, digits, '-' or '_', starting with a letter or digit (e.g. bakery-madrid).",
    code="invalid_slug",
)
validate_version_label = RegexValidator(r"^[0-9]{1,4}$", "A number, e.g. 2.", code="invalid_version")


def in_range(bounds: tuple[float, float]) -> list:
    """Validators for an inclusive (low, high) pair from `constants.py`."""
    low, high = bounds
    return [MinValueValidator(low), MaxValueValidator(high)]


def validate_finite(value) -> None:
    """NaN compares false with every bound, so a range alone would let it through."""
    if value is not None and not math.isfinite(value):
        raise ValidationError("Enter a finite number.", code="invalid_number")


def json_nulls_to_defaults(instance) -> None:
    """A JSON column that may be empty but not NULL gets its default for `null`.

    Field validation skips empty values, so without this `null` (a form's untouched box, a
    config file's `~`) would reach the database as a NOT NULL violation, a 500.
    """
    for db_field in instance._meta.concrete_fields:
        is_json = db_field.get_internal_type() == "JSONField"
        if is_json and not db_field.null and getattr(instance, db_field.attname) is None:
            setattr(instance, db_field.attname, db_field.get_default())


def normalize_prefix(value: str) -> str:
    """A prefix without a trailing slash, so `/api/v1/sales/` and `/api/v1/sales` are one."""
    return value.rstrip("/") if value not in ("", "/") else value


def validate_path_prefix(value: str) -> None:
    """A service prefix is `/api/v<N>/<name>[/...]` and never one the gateway serves itself."""
    prefix = normalize_prefix(value)
    if not _PREFIX_RE.match(prefix):
        raise ValidationError(
            "Enter a prefix like /api/v1/sales: lowercase letters, digits, '.', '_' or '-'.",
            code="invalid_prefix",
        )
    for reserved in RESERVED_PREFIXES:
        if prefix == reserved or prefix.startswith(reserved + "/"):
            raise ValidationError(
                f"{reserved} is served by the gateway itself and cannot be registered.",
                code="reserved_prefix",
            )


def validate_outbound_url(value: str) -> None:
    """Any URL the gateway fetches: the outbound guard's save-time check, as a field error."""
    try:
        check_url(value)
    except OutboundRefused as exc:
        raise ValidationError(exc.message, code=exc.code) from exc


def validate_upstream_url(value: str) -> None:
    """A target: the outbound guard's check, and no query or fragment (paths are appended)."""
    try:
        parts = check_url(value, label="Upstream URLs")
    except OutboundRefused as exc:
        raise ValidationError(exc.message, code=exc.code) from exc
    if parts.query or parts.fragment:
        raise ValidationError("Upstream URLs may not carry a query or fragment.", code="invalid_url")


def validate_string_list(value) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValidationError("Enter a list of non-empty strings.", code="invalid_list")
    if len(value) > LIST_MAX_ITEMS:
        raise ValidationError(f"At most {LIST_MAX_ITEMS} items.", code="too_many_items")
    if any(len(item) > LIST_ITEM_MAX_LENGTH for item in value):
        raise ValidationError(f"Each item at most {LIST_ITEM_MAX_LENGTH} characters.", code="item_too_long")


def _validate_known(value, known: list[str], what: str, code: str) -> None:
    validate_string_list(value)
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValidationError(f"Unknown {what}: {', '.join(unknown)}. Known: {', '.join(known)}.", code=code)


def validate_role_list(value) -> None:
    """Required roles must be roles a token can carry (viewer, member, staff, admin)."""
    _validate_known(value, Role.values, "roles", "invalid_role")


def validate_scope_list(value) -> None:
    """Scopes must be ones the gateway grants (read, write, admin, alerts:publish)."""
    _validate_known(value, Scope.values, "scopes", "invalid_scope")


def validate_slug_list(value) -> None:
    validate_string_list(value)
    for item in value:
        if not _SLUG_RE.match(item):
            raise ValidationError(f"{item!r} is not a service slug.", code="invalid_slug")


def validate_role_mapping(value) -> None:
    """{"external role": "gateway role"}: every target a role the gateway knows."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise ValidationError('Enter an object such as {"bakery-admin": "admin"}.', code="invalid_mapping")
    if len(value) > LIST_MAX_ITEMS:
        raise ValidationError(f"At most {LIST_MAX_ITEMS} entries.", code="too_many_items")
    unknown = sorted({str(v) for v in value.values()} - set(Role.values))
    if unknown or not all(isinstance(v, str) for v in value.values()):
        raise ValidationError(
            f"Unknown gateway roles: {', '.join(unknown)}. Known: {', '.join(Role.values)}.",
            code="invalid_role",
        )


def validate_method_list(value) -> None:
    validate_string_list(value)
    unknown = sorted({item.upper() for item in value} - set(ALL_METHODS))
    if unknown:
        raise ValidationError(f"Unknown HTTP methods: {', '.join(unknown)}.", code="invalid_method")


def clean_path_error(path: str) -> str | None:
    """Why `path` is not a clean absolute path (no dot segments, no '//', no control bytes)."""
    if not _PATH_RE.match(path) or "/../" in path + "/" or "//" in path:
        return f"{path!r} is not a clean path starting with '/'."
    return None


def validate_path_list(value) -> None:
    """Public paths are relative to the service prefix and start with '/'."""
    validate_string_list(value)
    for path in value:
        if error := clean_path_error(path):
            raise ValidationError(error, code="invalid_path")


def validate_cidr_list(value) -> None:
    """A list of networks such as ["10.0.0.0/8", "2001:db8::/32", "203.0.113.7"]."""
    validate_string_list(value)
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ValidationError(f"{item!r} is not an IP network: {exc}.", code="invalid_cidr") from exc


_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
_TRANSFORM_KEYS = {"add", "remove", "rename"}


def _check_header_name(name) -> None:
    if not isinstance(name, str) or not _HEADER_NAME_RE.match(name):
        raise ValidationError(f"{name!r} is not a valid header name.", code="invalid_header")


def validate_header_transforms(value) -> None:
    """{"request"|"response": {"add": {name: value}, "remove": [name], "rename": {old: new}}}."""
    if not isinstance(value, dict) or set(value) - {"request", "response"}:
        raise ValidationError('Use {"request": {...}, "response": {...}}.', code="invalid_transforms")
    for side, transforms in value.items():
        if not isinstance(transforms, dict) or set(transforms) - _TRANSFORM_KEYS:
            raise ValidationError(f"{side}: use the keys add, remove and rename.", code="invalid_transforms")
        shapes = {"add": dict, "remove": list, "rename": dict}
        for key, shape in shapes.items():
            items = transforms.get(key) or shape()
            if not isinstance(items, shape) or len(items) > LIST_MAX_ITEMS:
                raise ValidationError(
                    f"{side}.{key}: {'an object' if shape is dict else 'a list'} of at most "
                    f"{LIST_MAX_ITEMS} headers.",
                    code="invalid_transforms",
                )
        for name, header_value in (transforms.get("add") or {}).items():
            _check_header_name(name)
            if not isinstance(header_value, str) or any(c in header_value for c in "\r\n\x00"):
                raise ValidationError(
                    f"{side}.add.{name}: a header value on one line.", code="invalid_header"
                )
            if len(header_value) > HEADER_VALUE_MAX_LENGTH:
                raise ValidationError(
                    f"{side}.add.{name}: at most {HEADER_VALUE_MAX_LENGTH} characters.",
                    code="invalid_header",
                )
        for name in transforms.get("remove") or []:
            _check_header_name(name)
        for old, new in (transforms.get("rename") or {}).items():
            _check_header_name(old)
            _check_header_name(new)
