"""`shardline.v1.Inference`: the gRPC front door of the request pipeline.

Each RPC runs the router's pipeline (`router/pipeline.py`, shared with the HTTP
door): in-flight slot (RESOURCE_EXHAUSTED beyond the limit) -> admission (typed
errors; UNAVAILABLE fast when a model has no ready replica; and a slot per model:
RESOURCE_EXHAUSTED with a `grpc-retry-pushback-ms` trailer when the model is full)
-> compression -> decoding plan -> replica calls. When the client
cancels or its deadline passes, grpc.aio cancels this handler; closing the
pipeline then cancels the replica call, which aborts the engine request.
While the router drains, a call's status waits for the GOAWAY (`hold_call_ends`).
With `router.auth`, the tenant is the one the bearer token belongs to; without
it, the request's `tenant` field, else the `x-shardline-tenant` metadata value.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc

from shardline import wire
from shardline.engine.protocol import EngineInfo
from shardline.generation import GenerationDelta
from shardline.grpc_status import retry_after_s, to_status
from shardline.router.engine_reports import EngineReports
from shardline.router.pipeline import Pipeline
from shardline.router.report import RequestReport, policy_report
from shardline.security.auth import resolve_tenant
from shardline.spec.deployment import DeploymentSpec
from shardline.telemetry.requests import router_rpc
from shardline.v1 import inference_pb2 as pb
from shardline.v1 import inference_pb2_grpc as pb_grpc


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(self, spec: DeploymentSpec, pipeline: Pipeline, reports: EngineReports):
        self._spec = spec
        self._pipeline = pipeline
        self._reports = reports
        self._ends = asyncio.Event()
        self._ends.set()

    def hold_call_ends(self) -> None:
        """Until `release_call_ends`, an Inference call that is done waits before its
        status goes out (`RouterServer.drain`: the GOAWAY must reach a client before
        the end of its call does, or its next call races the closing server)."""
        self._ends.clear()

    def release_call_ends(self) -> None:
        self._ends.set()

    async def GenerateStream(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateChunk]:
        report, sent, error = RequestReport(), 0, None
        try:
            async for delta in self._serve(request, context, report, "GenerateStream"):
                sent += len(delta.token_ids)
                yield _chunk(report, delta)
        except Exception as exc:  # typed errors keep their status; anything else is INTERNAL
            error = exc
        await self._end(context, error, sent)

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        text, token_ids, last, report, error = [], [], None, RequestReport(), None
        try:
            async for delta in self._serve(request, context, report, "Generate"):
                text.append(delta.text)
                token_ids.extend(delta.token_ids)
                last = delta
        except Exception as exc:  # typed errors keep their status; anything else is INTERNAL
            error = exc
        await self._end(context, error, 0)
        return pb.GenerateResponse(
            request_id=report.request_id,
            text="".join(text),
            token_ids=token_ids,
            finish_reason=last.finish_reason or "" if last else "",
            usage=_usage(last) if last else None,
            report=policy_report(report),
        )

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        """Each model as its engine reports it; a model no engine has reported on
        (within `engine_reports.LIST_WAIT_S`) is listed with `reported` false."""
        names = [m.name for m in self._spec.models]
        reports = await asyncio.gather(*(self._reports.get(name) for name in names))
        return pb.ListModelsResponse(
            models=[
                _model_info(m.name, m.max_model_len, self._pipeline.ready.get(m.name, 0), report)
                for m, report in zip(self._spec.models, reports)
            ]
        )

    async def _end(self, context: grpc.aio.ServicerContext, error: Exception | None, tokens_sent: int) -> None:
        """Where every Inference call ends: held while the router sends its GOAWAY."""
        await self._ends.wait()
        if error is not None:
            await _abort(context, error, tokens_sent)

    async def _serve(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext, report: RequestReport, method: str
    ) -> AsyncIterator[GenerationDelta]:
        async with router_rpc(method, context, self._spec.telemetry.record_content) as rpc:
            tenant = _tenant(request, context)
            if tenant != request.tenant:
                request = _with_tenant(request, tenant)
            session = _metadata(context).get(wire.SESSION, "")
            stream = self._pipeline.run(request, self._timeout(context), report, rpc, session)
            async with aclosing(stream) as stream:
                async for delta in stream:
                    yield delta

    def _timeout(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        default = self._spec.router.limits.default_deadline_s
        return default if remaining is None else min(remaining, default)


def _model_info(name: str, max_model_len: int, ready: int, report: EngineInfo | None) -> pb.ModelInfo:
    if report is None:
        return pb.ModelInfo(name=name, max_model_len=max_model_len, ready_replicas=ready)
    return pb.ModelInfo(
        name=name,
        max_model_len=report.max_model_len,
        ready_replicas=ready,
        reported=True,
        tensor_parallel_size=report.tensor_parallel_size,
        pipeline_parallel_size=report.pipeline_parallel_size,
        data_parallel_size=report.data_parallel_size,
        expert_parallel=report.expert_parallel,
        expert_parallel_size=report.expert_parallel_size,
        quantization=report.quantization,
        workers=report.workers,
        experts=report.experts,
        experts_per_rank=report.experts_per_rank,
        int8_weights=report.int8_weights,
    )


def _chunk(report: RequestReport, delta: GenerationDelta) -> pb.GenerateChunk:
    final = delta.finish_reason is not None
    return pb.GenerateChunk(
        request_id=report.request_id,
        text=delta.text,
        token_ids=delta.token_ids,
        finish_reason=delta.finish_reason or "",
        usage=_usage(delta) if final else None,
        report=policy_report(report) if final else None,
    )


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return dict(context.invocation_metadata() or ())


def _tenant(request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> str:
    return resolve_tenant(request.tenant, _metadata(context).get(wire.TENANT, ""))


def _with_tenant(request: pb.GenerateRequest, tenant: str) -> pb.GenerateRequest:
    copy = pb.GenerateRequest()
    copy.CopyFrom(request)
    copy.tenant = tenant
    return copy


def _usage(delta: GenerationDelta) -> pb.Usage:
    return pb.Usage(prompt_tokens=delta.prompt_tokens, completion_tokens=delta.completion_tokens)


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, tokens_sent: int) -> None:
    code, message = to_status(exc)
    trailers = [(wire.TOKENS_SENT_TRAILER, str(tokens_sent))]
    after = retry_after_s(exc)
    if after is not None:
        trailers.append((wire.RETRY_PUSHBACK_TRAILER, str(round(after * 1000))))
    await context.abort(code, message, trailing_metadata=tuple(trailers))
