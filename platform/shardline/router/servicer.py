"""`shardline.v1.Inference`: admission, then streaming from a replica to the client.

Each RPC: in-flight slot (RESOURCE_EXHAUSTED beyond the limit) -> admission
(typed errors) -> readiness (UNAVAILABLE fast when the model has no ready
replica) -> stream from the backend. When the client cancels or its deadline
passes, grpc.aio cancels this handler; closing the backend stream then cancels
the replica call, which aborts the engine request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
from opentelemetry.trace import SpanKind

from shardline.engine.protocol import GenerationDelta
from shardline.errors import ResourceExhausted, Unavailable
from shardline.router.admission import admit
from shardline.router.backend import Backend
from shardline.router.status import to_status
from shardline.spec.model import DeploymentSpec
from shardline.telemetry import attributes as attr
from shardline.telemetry.requests import router_rpc
from shardline.telemetry.tracing import stage_span
from shardline.v1 import inference_pb2 as pb
from shardline.v1 import inference_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(self, spec: DeploymentSpec, backend: Backend):
        self._spec = spec
        self._backend = backend
        self._in_flight = 0
        self.ready: dict[str, int] = {m.name: 0 for m in spec.models}
        """Ready replicas per model; kept current by the router's health loop."""

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def GenerateStream(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateChunk]:
        try:
            async for delta, request_id in self._serve(request, context, "GenerateStream"):
                yield _chunk(request_id, delta)
        except Exception as exc:  # typed errors keep their status; anything else is INTERNAL
            await _abort(context, exc)

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        text, token_ids, last, request_id = [], [], None, ""
        try:
            async for delta, request_id in self._serve(request, context, "Generate"):
                text.append(delta.text)
                token_ids.extend(delta.token_ids)
                last = delta
        except Exception as exc:  # typed errors keep their status; anything else is INTERNAL
            await _abort(context, exc)
        return pb.GenerateResponse(
            request_id=request_id,
            text="".join(text),
            token_ids=token_ids,
            finish_reason=last.finish_reason or "" if last else "",
            usage=_usage(last) if last else None,
        )

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=[
                pb.ModelInfo(
                    name=m.name,
                    max_model_len=m.max_model_len,
                    tensor_parallel_size=m.parallelism.tensor,
                    pipeline_parallel_size=m.parallelism.pipeline,
                    expert_parallel_size=m.parallelism.expert,
                    ready_replicas=self.ready.get(m.name, 0),
                )
                for m in self._spec.models
            ]
        )

    async def _serve(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext, method: str
    ) -> AsyncIterator[tuple[GenerationDelta, str]]:
        async with router_rpc(method, context, self._spec.telemetry.record_content) as rpc:
            limit = self._spec.router.limits.max_concurrent_requests
            if self._in_flight >= limit:
                raise ResourceExhausted(
                    f"router has {self._in_flight} requests in flight; max_concurrent_requests is {limit}"
                )
            self._in_flight += 1
            try:
                with stage_span(attr.ADMISSION_SPAN):
                    generation = admit(request, self._spec, self._timeout(context))
                rpc.admitted(request.model, generation)
                if not self.ready.get(request.model):
                    raise Unavailable(f"model {request.model!r} has no ready replica yet; retry later")
                with stage_span(attr.REPLICA_CALL_SPAN, kind=SpanKind.CLIENT) as call:
                    stream = self._backend.stream(request.model, rpc.replica_call(generation, call))
                    try:
                        async for delta in stream:
                            rpc.delta(delta)
                            yield delta, generation.request_id
                    finally:
                        await stream.aclose()
            finally:
                self._in_flight -= 1

    def _timeout(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        default = self._spec.router.limits.default_deadline_s
        return default if remaining is None else min(remaining, default)


def _chunk(request_id: str, delta: GenerationDelta) -> pb.GenerateChunk:
    final = delta.finish_reason is not None
    return pb.GenerateChunk(
        request_id=request_id,
        text=delta.text,
        token_ids=delta.token_ids,
        finish_reason=delta.finish_reason or "",
        usage=_usage(delta) if final else None,
    )


def _usage(delta: GenerationDelta) -> pb.Usage:
    return pb.Usage(prompt_tokens=delta.prompt_tokens, completion_tokens=delta.completion_tokens)


async def _abort(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    code, message = to_status(exc)
    await context.abort(code, message)
