"""What the router and the LLM replica record for one request: spans and metrics.

Router: `router_rpc` opens the RPC's server span (gRPC semantic conventions),
continuing a W3C `traceparent` the client sent, returns the trace id to the
client in the response's initial metadata (`wire.TRACE_ID`), and counts the
RPC by method and status. Replica: `replica_request` opens the replica's span
under the carrier that rode in the request and hands the engine a carrier naming
that span, so vLLM's `llm_request` becomes its child.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from shardline import wire
from shardline.generation import GenerationDelta, GenerationRequest
from shardline.grpc_status import status_code
from shardline.telemetry import attributes as attr
from shardline.telemetry import metrics
from shardline.telemetry.tracing import carrier, parent_context, trace_id_hex, tracer


def request_attributes(model: str, request: GenerationRequest) -> dict[str, Any]:
    """GenAI semantic-convention attributes of a request (no prompt text)."""
    attrs = {
        attr.GEN_AI_SYSTEM: attr.GEN_AI_SYSTEM_VALUE,
        attr.GEN_AI_OPERATION_NAME: attr.GEN_AI_OPERATION_TEXT_COMPLETION,
        attr.GEN_AI_REQUEST_MODEL: model,
        attr.GEN_AI_REQUEST_MAX_TOKENS: request.max_tokens,
        attr.GEN_AI_REQUEST_TEMPERATURE: request.temperature,
        attr.GEN_AI_REQUEST_TOP_P: request.top_p,
        attr.GEN_AI_RESPONSE_ID: request.request_id,
    }
    if request.top_k:
        attrs[attr.GEN_AI_REQUEST_TOP_K] = request.top_k
    if request.seed is not None:
        attrs[attr.GEN_AI_REQUEST_SEED] = request.seed
    if request.stop:
        attrs[attr.GEN_AI_REQUEST_STOP_SEQUENCES] = list(request.stop)
    return attrs


def usage_attributes(delta: GenerationDelta) -> dict[str, Any]:
    return {
        attr.GEN_AI_USAGE_INPUT_TOKENS: delta.prompt_tokens,
        attr.GEN_AI_USAGE_OUTPUT_TOKENS: delta.completion_tokens,
        attr.GEN_AI_RESPONSE_FINISH_REASONS: [delta.finish_reason or ""],
    }


class RouterRPC:
    """One RPC at the router: its server span, token timing and usage."""

    def __init__(self, method: str, span: trace.Span, record_content: bool):
        self.method = method
        self.span = span
        self.record_content = record_content
        self.model = ""
        self._start = time.perf_counter()
        self._last_token: float | None = None
        self._text: list[str] = []

    @property
    def trace_id(self) -> str:
        return trace_id_hex(self.span)

    def admitted(self, model: str, request: GenerationRequest) -> None:
        self.model = model
        self.span.set_attributes(request_attributes(model, request))
        if self.record_content:
            self.span.set_attribute(attr.GEN_AI_PROMPT, request.prompt)

    def replica_call(self, request: GenerationRequest, span: trace.Span) -> GenerationRequest:
        """`request` carrying the W3C context of the replica-call span across Ray."""
        return dataclasses.replace(request, trace_context=carrier(span))

    def delta(self, delta: GenerationDelta) -> None:
        now = time.perf_counter()
        if delta.token_ids:
            if self._last_token is None:
                metrics.TIME_TO_FIRST_TOKEN.labels(self.model).observe(now - self._start)
                self.span.set_attribute(attr.TIME_TO_FIRST_TOKEN_S, now - self._start)
            else:
                metrics.INTER_TOKEN.labels(self.model).observe((now - self._last_token) / len(delta.token_ids))
            self._last_token = now
        if self.record_content:
            self._text.append(delta.text)
        if delta.finish_reason is not None:
            self._finished(delta)

    def _finished(self, delta: GenerationDelta) -> None:
        self.span.set_attributes(usage_attributes(delta))
        metrics.INPUT_TOKENS.labels(self.model).inc(delta.prompt_tokens)
        metrics.OUTPUT_TOKENS.labels(self.model).inc(delta.completion_tokens)
        if self._text:
            self.span.set_attribute(attr.GEN_AI_COMPLETION, "".join(self._text))

    def close(self, code: grpc.StatusCode, message: str = "") -> None:
        self.span.set_attribute(attr.RPC_GRPC_STATUS_CODE, code.value[0])
        if code != grpc.StatusCode.OK:
            self.span.set_status(Status(StatusCode.ERROR, f"{code.name}: {message}"))
        metrics.REQUESTS.labels(self.method, code.name).inc()
        metrics.REQUEST_DURATION.labels(self.method).observe(time.perf_counter() - self._start)
        self.span.end()


@contextlib.asynccontextmanager
async def router_rpc(
    method: str, context: grpc.aio.ServicerContext, record_content: bool = False
) -> AsyncIterator[RouterRPC]:
    """The server span of one gRPC call, current while the handler runs; see the module doc."""
    headers = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    attributes = {attr.RPC_SYSTEM: "grpc", attr.RPC_SERVICE: wire.INFERENCE_SERVICE, attr.RPC_METHOD: method}
    async with server_span(attr.SERVER_SPAN_PREFIX + method, method, headers, attributes, record_content) as rpc:
        if rpc.trace_id:
            await context.send_initial_metadata(((wire.TRACE_ID, rpc.trace_id),))
        yield rpc


@contextlib.asynccontextmanager
async def server_span(
    name: str, method: str, headers: dict[str, str], attributes: dict[str, Any], record_content: bool = False
) -> AsyncIterator[RouterRPC]:
    """The server span of one request at any front door (gRPC, HTTP): continues a W3C
    `traceparent` in `headers`, ends with the typed status the request ended with."""
    span = tracer().start_span(name, context=parent_context(headers), kind=SpanKind.SERVER, attributes=attributes)
    rpc = RouterRPC(method, span, record_content)
    code, message = grpc.StatusCode.OK, ""
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield rpc
    except (GeneratorExit, asyncio.CancelledError):
        code = grpc.StatusCode.CANCELLED
        raise
    except Exception as exc:
        code, message = status_code(exc), str(exc)
        span.record_exception(exc)
        raise
    finally:
        rpc.close(code, message)


class ReplicaRequest:
    """One request at an LLM replica: its span and the replica's load gauges."""

    def __init__(self, model: str, request: GenerationRequest, replica: str):
        self.span = tracer().start_span(
            attr.REPLICA_SPAN,
            context=parent_context(request.trace_context),
            kind=SpanKind.SERVER,
            attributes=request_attributes(model, request),
        )
        # The engine's request names this span as parent: vLLM's llm_request hangs under it.
        self.request = (
            dataclasses.replace(request, trace_context=carrier(self.span)) if self.span.is_recording() else request
        )
        self._ongoing = metrics.ONGOING_REQUESTS.labels(model, replica)
        self._queued = metrics.QUEUE_DEPTH.labels(model, replica)
        self._waiting = True
        self._ongoing.inc()
        self._queued.inc()

    def delta(self, delta: GenerationDelta) -> None:
        if self._waiting and delta.token_ids:
            self._left_queue()
        if delta.finish_reason is not None:
            self.span.set_attributes(usage_attributes(delta))

    def _left_queue(self) -> None:
        self._waiting = False
        self._queued.dec()

    def close(self, error: BaseException | None) -> None:
        if self._waiting:
            self._left_queue()
        self._ongoing.dec()
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self.span.end()


@contextlib.contextmanager
def replica_request(model: str, request: GenerationRequest, replica: str) -> Iterator[ReplicaRequest]:
    tracked = ReplicaRequest(model, request, replica)
    error: BaseException | None = None
    try:
        yield tracked
    except BaseException as exc:
        error = exc
        raise
    finally:
        tracked.close(error)


def replica_label() -> str:
    """The Serve replica's id (the pid outside Serve, e.g. in tests)."""
    try:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # not inside a Serve replica
        return f"pid-{os.getpid()}"
