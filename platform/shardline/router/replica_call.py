"""Replica calls: one replica's stream, and when that replica dies, the rest of it from another.

A retry before the first token repeats the call. After tokens went out it resumes:
the new replica gets the prompt plus the tokens already sent and continues, and its
deltas are renumbered so usage counts the whole stream. `router.retry` bounds the
attempts and their backoff. Every stream also ends at the request's deadline, and
counts as a lost replica when it goes quiet for `health.stall_timeout_s`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace

from opentelemetry.trace import SpanKind

from shardline.errors import Aborted, DeadlineExceeded, ReplicaLost, Unavailable
from shardline.generation import GenerationDelta, GenerationRequest
from shardline.router.backend import Backend
from shardline.router.report import RequestReport
from shardline.spec.deployment import DeploymentSpec
from shardline.telemetry import attributes as attr
from shardline.telemetry import metrics
from shardline.telemetry.tracing import carrier, stage_span


class ReplicaCaller:
    def __init__(self, spec: DeploymentSpec, backend: Backend):
        self._spec = spec
        self._backend = backend
        self._none_ready = {m.name: asyncio.Event() for m in spec.models}
        self._some_ready = {m.name: asyncio.Event() for m in spec.models}

    def readiness(self, ready: dict[str, int]) -> None:
        """The router's latest view of ready replicas per model (a retry does not wait
        for a model that has none left; a call to a model scaled to zero waits for one)."""
        for model, event in self._none_ready.items():
            if ready.get(model):
                event.clear()
                self._some_ready[model].set()
            else:
                event.set()
                self._some_ready[model].clear()

    async def stream(
        self, model: str, request: GenerationRequest, report: RequestReport
    ) -> AsyncIterator[GenerationDelta]:
        """One replica's stream of `model`; when that replica dies, the rest of it from
        another (see the module docstring)."""
        retry = self._spec.router.retry
        stall_s = self._spec.model(model).health.stall_timeout_s
        deadline = asyncio.get_running_loop().time() + request.timeout_s
        sent: list[int] = []
        for attempt in range(retry.attempts):
            already = len(sent)
            call = request if not sent else _resumed(request, sent, deadline)
            try:
                with stage_span(
                    attr.REPLICA_CALL_SPAN, {attr.TIER: model, attr.REPLICA_ATTEMPT: attempt}, kind=SpanKind.CLIENT
                ) as span:
                    # The replica's span continues this one across Ray.
                    traced = replace(call, trace_context=carrier(span)) if span.is_recording() else call
                    guarded = self._guarded(model, traced, attempt, deadline, stall_s, report.timeout_s)
                    async with aclosing(guarded) as stream:
                        async for delta in stream:
                            delta = _continued(delta, already)
                            sent.extend(delta.token_ids)
                            if delta.finish_reason is not None:
                                _record_replica(span, model, delta)
                            yield delta
                return
            except ReplicaLost as exc:
                lost = exc
            if sent and len(sent) >= request.max_tokens:  # only the final delta was lost
                yield _finished(sent, report, request)
                return
            if isinstance(lost, _NoReadyReplica) or (sent and not retry.resume):
                break
            pause = retry.backoff_s * 2**attempt
            if attempt + 1 == retry.attempts or asyncio.get_running_loop().time() + pause >= deadline:
                break
            report.retries += 1
            report.resumed_tokens = len(sent)
            metrics.RETRIES.labels(model, "resume" if sent else "retry").inc()
            await asyncio.sleep(pause)
        if sent:
            raise Aborted(
                f"request {request.request_id}: the replica of {model!r} failed after {len(sent)} tokens "
                f"were sent and {attempt + 1} replica call(s) ({lost.message})"
            )
        raise ReplicaLost(
            f"request {request.request_id}: {attempt + 1} replica call(s) to {model!r} failed; "
            f"retry later ({lost.message})"
        )

    async def _guarded(
        self,
        model: str,
        request: GenerationRequest,
        attempt: int,
        deadline: float,
        stall_s: float | None,
        timeout_s: float,
    ) -> AsyncIterator[GenerationDelta]:
        """The backend's stream, ended at the request's deadline, as a lost replica when
        it goes quiet (`stall_s`) and, for a retry, when the model has no ready replica
        left to wait for."""
        replicas = self._spec.model(model).replicas
        cold = replicas.min == 0 and not self._some_ready[model].is_set()
        async with aclosing(self._backend.stream(model, request)) as stream:
            if attempt:  # a replica just died: there may be none left
                stream = _first_unless(stream, self._none_ready[model], model)
            elif cold:  # scaled to zero: Serve holds the call and starts a replica for it
                stream = _held(stream, self._some_ready[model], replicas.autoscaling.hold_timeout_s, model)
            stall_s = None if cold else stall_s  # a replica's start is not a stall
            async for delta in _timed(stream, deadline, stall_s, model, request.request_id, timeout_s):
                yield delta


def _record_replica(span, model: str, final: GenerationDelta) -> None:
    """Who answered and what its prefix cache held, as the replica itself reported."""
    if not final.replica:
        return
    metrics.CACHED_PROMPT_TOKENS.labels(model, final.replica).inc(final.cached_tokens)
    span.set_attributes({attr.REPLICA_ID: final.replica, attr.CACHED_TOKENS: final.cached_tokens})


class _NoReadyReplica(ReplicaLost):
    """The model has no ready replica left: retrying now would only queue the call."""


async def _first_unless(
    stream: AsyncIterator[GenerationDelta], none_ready: asyncio.Event, model: str
) -> AsyncIterator[GenerationDelta]:
    """`stream`; but while it waits for its first delta, the model losing its last
    ready replica ends it. Serve would hold such a call until a replica is replaced
    (tens of seconds, a new engine); the caller gets a typed error now instead."""
    first = asyncio.ensure_future(anext(stream))
    gone = asyncio.ensure_future(none_ready.wait())
    try:
        await asyncio.wait((first, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not first.done():
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
    if first.cancelled():
        raise _NoReadyReplica(f"model {model!r} has no ready replica left")
    try:
        delta = first.result()
    except StopAsyncIteration:
        return
    yield delta
    async for delta in stream:
        yield delta


async def _held(
    stream: AsyncIterator[GenerationDelta], some_ready: asyncio.Event, hold_s: float, model: str
) -> AsyncIterator[GenerationDelta]:
    """`stream` of a model that has no replica yet: its call waits in Serve's handle
    (which asks the controller for a replica at once) up to `hold_s` for a replica to
    become ready. Past it, with none ready, the call is cancelled before it reached any
    replica: UNAVAILABLE, with advice to retry once the replica may be up."""
    first = asyncio.ensure_future(anext(stream))
    ready = asyncio.ensure_future(some_ready.wait())
    try:
        await asyncio.wait((first, ready), timeout=hold_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
        if not first.done() and not some_ready.is_set():
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
    if first.cancelled():
        metrics.OVERLOAD_REJECTIONS.labels(model).inc()
        raise Unavailable(
            f"model {model!r} is scaled to zero and no replica became ready within {hold_s:g} s "
            f"(replicas.autoscaling.hold_timeout_s); one is starting: retry after {hold_s:g} s",
            retry_after_s=hold_s,
        )
    try:
        yield await first
    except StopAsyncIteration:
        return
    async for delta in stream:
        yield delta


def _resumed(request: GenerationRequest, sent: list[int], deadline: float) -> GenerationRequest:
    return replace(
        request,
        continuation=request.continuation + tuple(sent),
        max_tokens=request.max_tokens - len(sent),
        timeout_s=time_left(deadline, request.request_id),
    )


def _continued(delta: GenerationDelta, already: int) -> GenerationDelta:
    """A resumed replica counts the tokens sent before as prompt: count them as completion."""
    if not already:
        return delta
    return replace(
        delta, prompt_tokens=max(delta.prompt_tokens - already, 0), completion_tokens=delta.completion_tokens + already
    )


def _finished(sent: list[int], report: RequestReport, request: GenerationRequest) -> GenerationDelta:
    """The final delta of a stream whose replica died after its last token but before
    its finish: every token was sent, so it ended at max_tokens."""
    prompt = report.compressed.sent_tokens if report.compressed else 0
    return GenerationDelta("", [], finish_reason="length", prompt_tokens=prompt, completion_tokens=len(sent))


async def _timed(
    stream: AsyncIterator[GenerationDelta],
    deadline: float,
    stall_s: float | None,
    model: str,
    request_id: str,
    timeout_s: float,
) -> AsyncIterator[GenerationDelta]:
    """`stream`'s deltas, each awaited until the request's `deadline` (loop time) and,
    with `stall_s`, for at most that long. Past the deadline: DeadlineExceeded (the
    replica enforces it too, but this holds when it hangs or its answer is lost, so a
    request without a client deadline still ends at the default cap). A stall means
    a stuck replica: ReplicaLost, so the caller retries or resumes elsewhere."""
    loop = asyncio.get_running_loop()
    while True:
        stalls = stall_s is not None and loop.time() + stall_s < deadline
        timer = asyncio.timeout_at(loop.time() + stall_s if stalls else deadline)
        try:
            async with timer:
                delta = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            if not timer.expired():  # raised by the stream itself, not our timer
                raise
            if stalls:
                raise ReplicaLost(
                    f"a replica of {model!r} sent no token for {stall_s:g} s (health.stall_timeout_s)"
                ) from None
            raise DeadlineExceeded(f"request {request_id} passed its deadline of {timeout_s:.3g} s") from None
        yield delta


def time_left(deadline: float, request_id: str) -> float:
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise DeadlineExceeded(f"request {request_id} passed its deadline before its next cascade attempt")
    return left
