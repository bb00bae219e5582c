"""JSON log lines: one object per line, so log shippers need no parsing rules.

Every line is masked on its way out (SPEC section 14, gateway_project.core.masking): the
message, the exception text, `path` / `query` / `url` fields and any other text field; a
field named like a credential (`authorization`, `cookie`, `password`, ...) is never shown,
and Django's `request` extra is reduced to its method and masked path.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from gateway_project.core.masking import MASK, mask_path, mask_query, mask_text, mask_url, query_param_names

__all__ = ["JsonFormatter"]

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged as a field.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_PATH_FIELDS = frozenset({"path", "raw_path", "instance"})
_QUERY_FIELDS = frozenset({"query", "query_string"})
_URL_FIELDS = frozenset({"url", "full_path", "upstream_url", "target_url", "referer", "referrer", "location"})
_SECRET_FIELDS = frozenset(
    {"authorization", "proxy_authorization", "cookie", "cookies", "set_cookie", "headers", "x_api_key"}
)
# Generated identifiers: nothing personal in them, and a UUID may look like a card number.
_PLAIN_FIELDS = frozenset({"request_id", "traceparent", "trace_id", "span_id", "status_code", "service"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        names = query_param_names()
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_text(record.getMessage(), names),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                line[key] = _masked_field(key, value, names)
        if record.exc_info:
            line["exception"] = mask_text(self.formatException(record.exc_info), names)
        return json.dumps(line, default=str, separators=(",", ":"))


def _masked_field(key: str, value, names: frozenset[str]):
    """One `extra=` field as it may be logged: credentials hidden, text masked, structure kept."""
    lowered = key.lower().replace("-", "_")
    if lowered in _SECRET_FIELDS or lowered in names:
        return MASK
    if value is None or isinstance(value, bool | int | float) or lowered in _PLAIN_FIELDS:
        return value
    if lowered == "request" and hasattr(value, "get_full_path"):  # django.request, django.security
        return f"{value.method} {mask_url(value.get_full_path(), names)}"
    if isinstance(value, dict):
        return {name: _masked_field(str(name), item, names) for name, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked_field(key, item, names) for item in value]
    text = value if isinstance(value, str) else str(value)
    if lowered in _PATH_FIELDS:
        return mask_path(text)
    if lowered in _QUERY_FIELDS:
        return mask_query(text, names)
    if lowered in _URL_FIELDS:
        return mask_url(text, names)
    return mask_text(text, names)
