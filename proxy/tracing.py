"""OpenTelemetry export of proxied requests, only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Each request becomes one SERVER span whose trace id and span id are exactly those of the
traceparent the gateway sent upstream (gateway_project.core.request_id), with the client's traceparent as
its parent, so the upstream's own spans nest under the gateway's in any OTLP backend. The
span is built once the response is done and handed to the SDK's batch processor, which
exports from its own thread: the hot path builds one span object when enabled, and pays
nothing at all when not (the Responder then holds no exporter).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from gateway_project.core.request_id import parse_traceparent

__all__ = ["SpanExporter", "span_exporter_from_settings"]

logger = logging.getLogger("gateway.tracing")


class SpanExporter:
    """Turns finished exchanges into spans for an OTLP/HTTP collector."""

    def __init__(self, endpoint: str, service_name: str, schedule_delay_ms: int = 1000) -> None:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._trace, self._span = trace, ReadableSpan  # the optional extra, imported once
        self._resource = Resource.create({"service.name": service_name})
        exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
        self._processor = BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms)

    def record(self, exchange, duration: float) -> None:
        trace = self._trace
        ours = parse_traceparent(exchange.traceparent)
        if ours is None or not ours[2] & 1:  # not sampled by whoever started the trace
            return
        client = parse_traceparent(exchange.header_index.get(b"traceparent"))
        parent = trace.SpanContext(client[0], client[1], is_remote=True) if client else None
        end = time.time_ns()
        service = exchange.service.slug if exchange.service is not None else "-"
        status = exchange.status
        span = self._span(
            name=f"{exchange.method} {service}",
            context=trace.SpanContext(
                ours[0], ours[1], is_remote=False, trace_flags=trace.TraceFlags(ours[2])
            ),
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
            kind=trace.SpanKind.SERVER,
            status=trace.Status(trace.StatusCode.ERROR if status >= 500 else trace.StatusCode.UNSET),
            start_time=end - int(duration * 1e9),
            end_time=end,
        )
        self._processor.on_end(span)

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
