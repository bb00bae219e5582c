"""OpenTelemetry export of proxied requests, only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Each request becomes one SERVER span whose trace id and span id are exactly those of the
traceparent the gateway sent upstream (proxy.request_id), with the client's traceparent as
its parent, so the upstream's own spans nest under the gateway's in any OTLP backend. The
span is built once the response is done and handed to the SDK's batch processor, which
exports from its own thread: the hot path pays a dict and an object when enabled, and
nothing at all when not (the Responder then holds no exporter).
"""

from __future__ import annotations

import logging
import re
import time

from django.conf import settings

__all__ = ["SpanExporter", "span_exporter_from_settings"]

logger = logging.getLogger("gateway.tracing")

_TRACEPARENT_RE = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_SCOPE = "gateway.proxy"


def _ids(raw: bytes | None) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a well-formed, non-zero traceparent."""
    match = _TRACEPARENT_RE.match(raw.strip()) if raw else None
    if match is None:
        return None
    trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
    return (trace_id, span_id, int(match.group(3), 16)) if trace_id and span_id else None


class SpanExporter:
    """Turns finished exchanges into spans for an OTLP/HTTP collector."""

    def __init__(self, endpoint: str, service_name: str, schedule_delay_ms: int = 1000) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._resource = Resource.create({"service.name": service_name})
        exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
        self._processor = BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms)

    def record(self, exchange, duration: float) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        ours = _ids(exchange.traceparent)
        if ours is None or not ours[2] & 1:  # not sampled by whoever started the trace
            return
        client = _ids(exchange.header_index.get(b"traceparent"))
        parent = SpanContext(client[0], client[1], is_remote=True) if client else None
        end = time.time_ns()
        service = exchange.service.slug if exchange.service is not None else "-"
        status = exchange.status
        span = ReadableSpan(
            name=f"{exchange.method} {service}",
            context=SpanContext(ours[0], ours[1], is_remote=False, trace_flags=TraceFlags(ours[2])),
            parent=parent,
            resource=self._resource,
            attributes={
                "http.request.method": exchange.method,
                "http.response.status_code": status,
                "url.path": exchange.path or exchange.scope["path"],
                "gateway.service": service,
                "gateway.request_id": exchange.request_id,
                "client.address": exchange.client_ip or "",
            },
            kind=SpanKind.SERVER,
            status=Status(StatusCode.ERROR) if status >= 500 else Status(StatusCode.UNSET),
            start_time=end - int(duration * 1e9),
            end_time=end,
        )
        self._processor.on_end(span)

    def flush(self, timeout_ms: int = 5000) -> bool:
        return self._processor.force_flush(timeout_ms)

    def close(self) -> None:
        self._processor.shutdown()


def span_exporter_from_settings() -> SpanExporter | None:
    """An exporter when an OTLP endpoint is configured and the `otel` extra is installed."""
    endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT
    if not endpoint:
        return None
    try:
        return SpanExporter(endpoint, settings.OTEL_SERVICE_NAME, settings.OTEL_SCHEDULE_DELAY_MS)
    except ImportError:
        logger.error(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
            "(pip install '.[otel]'); traces are not exported"
        )
        return None
