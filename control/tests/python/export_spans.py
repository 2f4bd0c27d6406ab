"""Exports known spans with the OpenTelemetry Python SDK to a Trellis collector.

Service "checkout" exports over OTLP/gRPC, service "payments" over OTLP/HTTP (protobuf), in one
trace: checkout's SERVER span "GET /checkout" (12 ms, status ERROR, typed attributes, one event)
-> its CLIENT span "POST /pay" (7 ms) -> payments' SERVER span "POST /pay" (5 ms). A second
trace is checkout's "GET /health" (0.5 ms). Times are explicit, so durations are exact.

Prints the ids as JSON. Exits non-zero if any export failed.

Usage: export_spans.py GRPC_ENDPOINT HTTP_ENDPOINT   (e.g. http://127.0.0.1:4317 http://127.0.0.1:4318)
"""

import json
import sys
import time

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context


class Checked(SpanExporter):
    """Records whether every export succeeded (SimpleSpanProcessor swallows failures)."""

    def __init__(self, inner):
        self.inner = inner
        self.failures = 0

    def export(self, spans):
        result = self.inner.export(spans)
        if result != SpanExportResult.SUCCESS:
            self.failures += 1
        return result

    def shutdown(self):
        self.inner.shutdown()


def provider(service, exporter):
    p = TracerProvider(resource=Resource.create({"service.name": service, "service.version": "1.2.3"}))
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


def main():
    grpc_endpoint, http_endpoint = sys.argv[1], sys.argv[2]
    grpc_exporter = Checked(GrpcExporter(endpoint=grpc_endpoint, insecure=True, timeout=10))
    http_exporter = Checked(HttpExporter(endpoint=http_endpoint + "/v1/traces", timeout=10))
    checkout = provider("checkout", grpc_exporter)
    payments = provider("payments", http_exporter)

    ms = 1_000_000
    now = time.time_ns() - 5_000 * ms
    tracer = checkout.get_tracer("shop", "0.1")
    root = tracer.start_span(
        "GET /checkout",
        kind=SpanKind.SERVER,
        start_time=now,
        attributes={"http.request.method": "GET", "http.response.status_code": 500, "retry": True, "ratio": 0.5},
    )
    root.add_event("cache miss", {"key": "cart-42"}, timestamp=now + 1 * ms)
    client = tracer.start_span("POST /pay", kind=SpanKind.CLIENT, context=set_span_in_context(root), start_time=now + 2 * ms)
    server = payments.get_tracer("pay").start_span(
        "POST /pay", kind=SpanKind.SERVER, context=set_span_in_context(client), start_time=now + 3 * ms
    )
    server.end(end_time=now + 8 * ms)
    client.end(end_time=now + 9 * ms)
    root.set_status(Status(StatusCode.ERROR, "payment failed"))
    root.end(end_time=now + 12 * ms)

    health = tracer.start_span(
        "GET /health", kind=SpanKind.SERVER, start_time=now + 20 * ms, attributes={"http.response.status_code": 200}
    )
    health.end(end_time=now + 20 * ms + 500_000)

    checkout.shutdown()
    payments.shutdown()
    failures = grpc_exporter.failures + http_exporter.failures
    print(
        json.dumps(
            {
                "trace": format(root.get_span_context().trace_id, "032x"),
                "root": format(root.get_span_context().span_id, "016x"),
                "client": format(client.get_span_context().span_id, "016x"),
                "server": format(server.get_span_context().span_id, "016x"),
                "health_trace": format(health.get_span_context().trace_id, "032x"),
                "start_us": now // 1000,
                "failures": failures,
            }
        )
    )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
