"""OpenTelemetry export: one span per proxied request, in the trace the upstream sees."""

import httpx
import pytest

from tests.live import GatewayServer, RecordingUpstream, wait_until

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def collector():
    """A loopback stand-in for an OTLP/HTTP collector: records what is POSTed to it."""
    server = RecordingUpstream().start()
    yield server
    server.stop()


def exported_spans(collector, timeout: float = 5) -> list:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    wait_until(lambda: collector.hits("/v1/traces"), timeout, message="an export to the collector")
    spans = []
    for hit in collector.hits("/v1/traces"):
        request = ExportTraceServiceRequest()
        request.ParseFromString(hit.body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                spans += [(service, span) for span in scope_spans.spans]
    return spans


def test_a_proxied_request_is_exported_as_a_span_in_the_clients_trace(
    collector, make_service, upstream, transactional_db, settings
):
    settings.RATE_LIMIT_DEFAULT = ""
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = collector.url
    settings.OTEL_SERVICE_NAME = "gateway-under-test"
    settings.OTEL_SCHEDULE_DELAY_MS = 50
    make_service("sales", targets=[upstream.url])
    with GatewayServer() as gateway:
        gateway.sync()
        # When: a client inside a trace calls a service through the gateway.
        response = httpx.get(
            f"{gateway.url}/api/v1/sales/echo",
            headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
        )
        assert response.status_code == 200
        spans = exported_spans(collector)
    # Then: one SERVER span, child of the client's span, whose id is the parent the upstream saw.
    upstream_parent = upstream.hits("/echo")[0].headers["traceparent"].split("-")[2]
    assert len(spans) == 1
    resource, span = spans[0]
    assert resource["service.name"] == "gateway-under-test"
    assert span.trace_id.hex() == CLIENT_TRACE
    assert span.parent_span_id.hex() == CLIENT_SPAN
    assert span.span_id.hex() == upstream_parent
    assert span.name == "GET sales"
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["http.response.status_code"].int_value == 200
    assert attributes["http.request.method"].string_value == "GET"
    assert attributes["gateway.request_id"].string_value == response.headers["x-request-id"]
    assert 0 < span.end_time_unix_nano - span.start_time_unix_nano < 5 * 10**9


def test_nothing_is_exported_or_paid_for_when_no_endpoint_is_set(make_service, upstream, transactional_db):
    make_service("sales", targets=[upstream.url])
    with GatewayServer() as gateway:
        gateway.sync()
        assert gateway.runtime.respond.span_exporter is None
        assert httpx.get(f"{gateway.url}/api/v1/sales/echo").status_code == 200
