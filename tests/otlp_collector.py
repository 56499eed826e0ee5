"""A real OTLP/gRPC trace receiver for tests: binds port 0, keeps every span it gets."""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from waiting import Not, eventually


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attrs(kvs) -> dict:
    return {kv.key: _value(kv.value) for kv in kvs}


class OtlpCollector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self):
        self.spans: list[dict] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def Export(self, request, context):
        with self._lock:
            for rs in request.resource_spans:
                resource = _attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    self.spans.extend(_record(s, resource) for s in ss.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: str, until=lambda spans: True, timeout_s: float = 30.0) -> list[dict]:
        """Spans of `trace_id`, waiting until `until(spans)` holds (exports are batched)."""

        def arrived():
            with self._lock:
                spans = [s for s in self.spans if s["trace_id"] == trace_id]
            return (spans,) if until(spans) else Not(f"spans so far: {sorted(s['name'] for s in spans)}")

        (spans,) = eventually(arrived, timeout_s=timeout_s, interval_s=0.2, message=f"spans of trace {trace_id}")
        return spans

    def stop(self) -> None:
        self._server.stop(0)


def _record(span, resource: dict) -> dict:
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_id": span.parent_span_id.hex(),
        "name": span.name,
        "kind": span.kind,
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "status": span.status.code,
        "attributes": _attrs(span.attributes),
        "resource": resource,
    }
