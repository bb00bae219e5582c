"""Log lines in one of two formats, chosen by `LOG_FORMAT` in settings.LOGGING.

`JsonFormatter` (the default): one object per line, so log shippers need no parsing rules.
`ConsoleFormatter` (`make run`): one readable line per record, `time level logger message
key=value ...`, so a person can follow a console that several processes write to.
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

__all__ = ["ConsoleFormatter", "JsonFormatter"]

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged as a field.
# uvicorn's `color_message` repeats the message with terminal colours.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "color_message"}
_PATH_FIELDS = frozenset({"path", "raw_path", "instance"})
_QUERY_FIELDS = frozenset({"query", "query_string"})
_URL_FIELDS = frozenset({"url", "full_path", "upstream_url", "target_url", "referer", "referrer", "location"})
_SECRET_FIELDS = frozenset(
    {"authorization", "proxy_authorization", "cookie", "cookies", "set_cookie", "headers", "x_api_key"}
)
# Generated identifiers: nothing personal in them, and a UUID may look like a card number.
_PLAIN_FIELDS = frozenset({"request_id", "traceparent", "trace_id", "span_id", "status_code", "service"})
_LEVEL_WIDTH = len("WARNING")  # console levels line up
_CONSOLE_SEPARATOR = "  "


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        names = query_param_names()
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_text(record.getMessage(), names),
        }
        line.update(_masked_extras(record, names))
        if record.exc_info:
            line["exception"] = mask_text(self.formatException(record.exc_info), names)
        return json.dumps(line, default=str, separators=(",", ":"))


class ConsoleFormatter(logging.Formatter):
    """`20:13:04.591 INFO    gateway.runtime  config installed  config_version=19`, masked alike."""

    def format(self, record: logging.LogRecord) -> str:
        names = query_param_names()
        clock = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        head = f"{clock}.{int(record.msecs):03d} {record.levelname:<{_LEVEL_WIDTH}} {record.name}"
        parts = [head, mask_text(record.getMessage(), names)]
        extras = " ".join(f"{key}={_console_value(value)}" for key, value in _masked_extras(record, names))
        if extras:
            parts.append(extras)
        line = _CONSOLE_SEPARATOR.join(parts)
        if record.exc_info:
            line += "\n" + mask_text(self.formatException(record.exc_info), names)
        return line


def _console_value(value) -> str:
    """A field value on one line: bare when it is one plain word, else JSON (quoted, escaped)."""
    if isinstance(value, str) and value and not any(ch.isspace() or ch in '"=' for ch in value):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    return json.dumps(value, default=str, separators=(",", ":"))


def _masked_extras(record: logging.LogRecord, names: frozenset[str]):
    """The `extra=` fields of a record, masked, as (name, value) pairs."""
    for key, value in record.__dict__.items():
        if key not in _RECORD_FIELDS and not key.startswith("_"):
            yield key, _masked_field(key, value, names)


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
