"""The response side of the pipeline: the gateway's own headers, problem documents, and the
one access-log line, metrics observation and (when configured) trace span per request
(SPEC section 4 step 11, section 10).
"""

from __future__ import annotations

from time import perf_counter

from gateway_project.core.problems import PROBLEM_TYPES, problem_bytes
from proxy.exchange import Answered, Exchange, Rejection

__all__ = ["Responder"]

_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_PROBLEM_CONTENT_TYPE = (b"content-type", b"application/problem+json")


class Responder:
    def __init__(self, metrics, traffic, access_log, span_exporter=None) -> None:
        self.metrics = metrics
        self.traffic = traffic
        self.access_log = access_log
        self.span_exporter = span_exporter  # None unless OpenTelemetry export is configured
        self.meter = None  # usage metering (proxy.metering.Meter), set by the runtime

    async def start(self, exchange: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the status line and headers with the gateway's own headers added."""
        if exchange.plugins is not None and exchange.plugins.response:
            from proxy.plugins import run_response_hooks

            run_response_hooks(exchange, status, headers)
        present = {name for name, _ in headers}
        headers += exchange.response_headers
        headers += [
            (b"x-request-id", exchange.request_id.encode()),
            (b"x-process-time", f"{perf_counter() - exchange.started:.6f}".encode()),
        ]
        for header in _SECURITY_HEADERS:
            if header[0] not in present:
                headers.append(header)
        if exchange.scope.get("scheme") == "https" or (
            exchange.peer_trusted and exchange.header_index.get(b"x-forwarded-proto") == b"https"
        ):
            headers.append(_HSTS)
        exchange.status = status
        exchange.response_started = True
        await exchange.send({"type": "http.response.start", "status": status, "headers": headers})

    async def problem(self, exchange: Exchange, rejection: Rejection) -> None:
        problem = PROBLEM_TYPES[rejection.code]
        if not exchange.request_id:
            from gateway_project.core.request_id import new_request_id

            exchange.request_id = new_request_id()
        body = problem_bytes(
            rejection.code,
            rejection.detail,
            exchange.path or exchange.scope["path"],
            exchange.request_id,
            **rejection.extra,
        )
        headers = [_PROBLEM_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
        headers += rejection.headers
        if rejection.code == "METHOD_NOT_ALLOWED" and exchange.service is not None:
            headers.append((b"allow", exchange.service.allow_header.encode()))
        await self.start(exchange, problem.status, headers)
        await exchange.send({"type": "http.response.body", "body": body, "more_body": False})
        exchange.bytes_out = len(body)

    async def answer(self, exchange: Exchange, answered: Answered) -> None:
        headers = list(answered.headers)
        headers.append((b"content-length", str(len(answered.body)).encode()))
        await self.start(exchange, answered.status, headers)
        await exchange.send({"type": "http.response.body", "body": answered.body, "more_body": False})
        exchange.bytes_out = len(answered.body)

    def finish(self, exchange: Exchange) -> None:
        """One metrics observation and one structured log line per request."""
        duration = perf_counter() - exchange.started
        service = exchange.service.slug if exchange.service is not None else "-"
        self.metrics.observe_request(
            exchange.method,
            service,
            exchange.status,
            duration,
            exchange.upstream_time,
            exchange.bytes_in,
            exchange.bytes_out,
        )
        self.traffic.record(service, exchange.status, duration)
        if self.meter is not None and exchange.service is not None:
            identity = exchange.identity
            tenant = (identity.tenant or "") if identity is not None else ""
            self.meter.record(
                tenant, service, exchange.status, exchange.bytes_in, exchange.bytes_out, duration
            )
        if self.span_exporter is not None:
            self.span_exporter.record(exchange, duration)
        if exchange.plugins is not None and exchange.plugins.log:
            exchange.runtime.plugin_logs.submit(exchange, duration)
        if not self.access_log.enabled:
            return
        identity = exchange.identity
        index = exchange.header_index
        self.access_log.write(
            {
                "request_id": exchange.request_id,
                "method": exchange.method,
                "path": exchange.path or exchange.scope["path"],
                "service": service,
                "status_code": exchange.status,
                "process_time": round(duration, 6),
                "upstream_time": round(exchange.upstream_time, 6),
                "user_id": identity.subject if identity else None,
                "tenant_id": identity.tenant if identity else None,
                "client_ip": exchange.client_ip,
                "user_agent": index.get(b"user-agent", b"").decode("latin-1")[:256],
                "bytes_in": exchange.bytes_in,
                "bytes_out": exchange.bytes_out,
                "target": exchange.target[0].label if exchange.target else None,
            }
        )
