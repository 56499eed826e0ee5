"""The router's request path: one pipeline of named stages.

    admission -> compression -> decoding_plan -> attempt (per cascade tier) -> replica_call

Admission also takes a slot on every model the request may call (router/capacity.py):
a model already holding ready replicas x (max_ongoing + max_queued) requests rejects
at once with RESOURCE_EXHAUSTED and retry advice.

`Pipeline.run(request, timeout_s, outcome)` takes the request proto and a timeout
in seconds (no gRPC context), so any front door (gRPC today, HTTP later) reuses
it and tracing can wrap each stage method. Policy logic lives in `policies/`;
here the stages gather what the policies need (token counts, embeddings, prompt
logprobs, budgets), apply their decisions and fill `outcome` for the response.

Money: the plan's worst case is reserved from the tenant's ledger before the
first replica call and settled with the actual cost just before the final delta
goes out (or when the request fails or is cancelled), so the report on the last
chunk is complete and concurrent requests can never overspend.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace

from opentelemetry.trace import SpanKind

from shardline.engine.protocol import GenerationDelta, GenerationRequest
from shardline.errors import Aborted, DeadlineExceeded, ReplicaLost, ResourceExhausted, Unavailable
from shardline.policies import uncertainty
from shardline.policies.compression import Compressed, Scorers, compress, skip_reason
from shardline.policies.compression.extractive import Embedder
from shardline.policies.decoding.budget import Ledger
from shardline.policies.decoding.costs import Tier
from shardline.policies.decoding.plan import Plan, make_plan, should_escalate
from shardline.router import scorers
from shardline.router.admission import admit
from shardline.router.backend import Backend
from shardline.router.capacity import Capacity, Held
from shardline.router.metering import Metering
from shardline.router.policy_admission import compression_options, tenant
from shardline.spec.model import DeploymentSpec
from shardline.telemetry import attributes as attr
from shardline.telemetry import metrics
from shardline.telemetry.requests import RouterRPC
from shardline.telemetry.tracing import carrier, stage_span
from shardline.v1 import inference_pb2 as pb

STAGES = ("admission", "compression", "decoding_plan", "attempt", "replica_call")
TOP_LOGPROBS = 2  # top-1 and top-2: enough for the margin signal
SPECIAL_TOKENS = 2  # BOS/EOS the engine may add to the counted prompt


@dataclass
class Outcome:
    """What the policies decided and what it cost; complete when the final delta is yielded."""

    request_id: str = ""
    compressed: Compressed | None = None
    plan: Plan | None = None
    tenant: str = ""
    answered_by: str = ""
    escalated: bool = False
    charged: float = 0.0
    budget_left: float | None = None
    uncertainty: uncertainty.Uncertainty | None = None
    scoring_cost: float = 0.0
    """The self_information scoring prefill on the cheapest tier (charged with the answer)."""
    retries: int = 0
    """Replica calls repeated because a replica (or its engine) died."""
    resumed_tokens: int = 0
    """Tokens already streamed when the last retry began (0: it started over)."""
    timeout_s: float = 0.0
    """The request's whole deadline, in seconds from admission (for error messages)."""


@dataclass
class _Billing:
    ledger: Ledger | None
    reservation: int | None
    settled: bool = False


class Pipeline:
    def __init__(self, spec: DeploymentSpec, backend: Backend, embed: Embedder | None = None,
                 metering: Metering | None = None):
        self._spec = spec
        self._backend = backend
        self._embed = embed
        self._metering = metering or Metering(spec)
        self.in_flight = 0
        self.draining = False
        """Set when the router drains: new calls are refused (UNAVAILABLE), live ones go on."""
        self.capacity = Capacity(spec)
        self._none_ready = {m.name: asyncio.Event() for m in spec.models}
        self.ready = {m.name: 0 for m in spec.models}

    @property
    def ready(self) -> dict[str, int]:
        """Ready replicas per model, as the router's health loop last saw them."""
        return self._ready

    @ready.setter
    def ready(self, value: dict[str, int]) -> None:
        self._ready = value
        for model, event in self._none_ready.items():
            if value.get(model):
                event.clear()
            else:
                event.set()

    async def run(self, request: pb.GenerateRequest, timeout_s: float, outcome: Outcome,
                  rpc: RouterRPC | None = None) -> AsyncIterator[GenerationDelta]:
        """Every stage runs in its own span under the current one (the front door's
        server span); `rpc`, when given, gets the admitted request and every delta."""
        self._enter()
        held: Held | None = None
        try:
            with stage_span(attr.ADMISSION_SPAN):
                generation = self.admission(request, timeout_s)
                held = self.capacity.take((t.name for t in self._metering.tiers(request.model)), self.ready)
            outcome.request_id, outcome.timeout_s = generation.request_id, generation.timeout_s
            if rpc:
                rpc.admitted(request.model, generation)
            deadline = asyncio.get_running_loop().time() + generation.timeout_s
            with stage_span(attr.COMPRESSION_SPAN) as span:
                outcome.compressed = await self.compression(request, generation, outcome)
                _record_compression(span, request.model, outcome.compressed)
            with stage_span(attr.DECODING_PLAN_SPAN) as span:
                billing = self.decoding_plan(request, generation, outcome)
                span.set_attributes({attr.TENANT: outcome.tenant, attr.TIER: [t.name for t in outcome.plan.tiers]})
            try:
                attempts = self._attempts(generation, request.uncertainty, deadline, outcome, billing)
                async with aclosing(attempts) as stream:
                    async for delta in stream:
                        if rpc:
                            rpc.delta(delta)
                        yield delta
            finally:
                self._settle(billing, outcome)
                _record_cost(outcome, rpc)
        finally:
            self.in_flight -= 1
            if held is not None:
                self.capacity.give(held, finished=bool(outcome.answered_by))

    def admission(self, request: pb.GenerateRequest, timeout_s: float) -> GenerationRequest:
        generation = admit(request, self._spec, timeout_s)
        tiers = self._metering.tiers(request.model)
        missing = [t.name for t in tiers if not self.ready.get(t.name)]
        if missing:
            raise Unavailable(f"model {missing[0]!r} has no ready replica yet; retry later")
        return generation

    async def compression(self, request: pb.GenerateRequest, generation: GenerationRequest,
                          outcome: Outcome) -> Compressed:
        options = compression_options(request, self._spec)
        first = self._metering.tiers(request.model)[0].name
        count = scorers.counter_for(self._spec.model(first))
        found = Scorers(count=count, embed=self._embed)
        if options.policy == "self_information" and not skip_reason(count(generation.prompt), options):
            scorer = scorers.cheapest_tier(self._spec, first)
            found = replace(found, token_nll=await scorers.prompt_nll(self._backend, scorer, generation, generation.prompt))
            outcome.scoring_cost = self._metering.tier(scorer).cost(len(found.token_nll) + SPECIAL_TOKENS, 1)
        if options.policy == "none":  # only a token count: not worth a thread hop
            return compress(generation.prompt, options, found)
        # MiniLM and the tokenizer are CPU work: keep the event loop serving others.
        return await asyncio.to_thread(compress, generation.prompt, options, found)

    def decoding_plan(self, request: pb.GenerateRequest, generation: GenerationRequest, outcome: Outcome) -> _Billing:
        outcome.tenant = tenant(request)
        ledger = self._metering.ledger(outcome.tenant)
        outcome.tenant = ledger.tenant if ledger else ""
        cascade = self._spec.policies.cascade(request.model)
        now = self._metering.now()
        outcome.charged = outcome.scoring_cost
        outcome.plan = make_plan(
            self._metering.tiers(request.model), outcome.compressed.sent_tokens + SPECIAL_TOKENS,
            generation.max_tokens, ledger.remaining(now) - outcome.scoring_cost if ledger else None,
            cascade.escalate_above if cascade else 1.0, ledger.pace(now) if ledger else 1.0, outcome.tenant,
            generation.timeout_s,
        )
        reservation = ledger.reserve(outcome.plan.reserve + outcome.scoring_cost, now) if ledger else None
        return _Billing(ledger, reservation)

    async def _attempts(self, generation: GenerationRequest, scored: bool, deadline: float, outcome: Outcome,
                        billing: _Billing) -> AsyncIterator[GenerationDelta]:
        plan = outcome.plan
        scored = scored or plan.cascade
        base = replace(generation, prompt=outcome.compressed.text, max_tokens=plan.max_tokens,
                       logprobs=TOP_LOGPROBS if scored else 0)
        for index, tier in enumerate(plan.tiers):
            last = index == len(plan.tiers) - 1
            request = replace(base, timeout_s=_left(deadline, generation.request_id))
            with stage_span(attr.CASCADE_ATTEMPT_SPAN, {attr.TIER: tier.name, attr.CASCADE_ATTEMPT: index}) as span:
                async with aclosing(self.attempt(tier, request, last, outcome)) as stream:
                    async for delta in stream:
                        if delta.finish_reason is not None:
                            outcome.uncertainty = uncertainty.score(delta.logprobs, delta.raw_logits) if scored else None
                            if outcome.uncertainty:
                                span.set_attribute(attr.UNCERTAINTY, outcome.uncertainty.score)
                            if not last and should_escalate(plan, index, outcome.uncertainty.score):
                                outcome.escalated = True
                                metrics.ESCALATIONS.labels(tier.name, plan.tiers[index + 1].name).inc()
                                break
                            outcome.answered_by = tier.name
                            self._settle(billing, outcome)
                        yield delta
            if outcome.answered_by:
                return

    async def attempt(self, tier: Tier, request: GenerationRequest, last: bool,
                      outcome: Outcome) -> AsyncIterator[GenerationDelta]:
        """One tier's answer: streamed when it is the last tier, else buffered into one
        delta (whose logprobs the escalation decision reads). The final delta carries
        every logprob of the answer either way."""
        buffered, latest, logprobs, charged = GenerationDelta("", []), None, [], False
        try:
            async with aclosing(self.replica_call(tier.name, request, outcome)) as stream:
                async for delta in stream:
                    latest = delta
                    logprobs.extend(delta.logprobs)
                    if delta.finish_reason is not None:
                        outcome.charged += self._cost(tier, latest, outcome)
                        charged = True
                    if last:
                        yield replace(delta, logprobs=logprobs) if delta.finish_reason else delta
                    else:
                        buffered = buffered.merge(delta)
            if not last:
                yield replace(buffered, logprobs=logprobs)
        finally:
            if not charged and latest is not None:  # failed or cancelled midway: pay for what was produced
                outcome.charged += self._cost(tier, latest, outcome)

    async def replica_call(self, model: str, request: GenerationRequest,
                           outcome: Outcome) -> AsyncIterator[GenerationDelta]:
        """One replica's stream; when that replica dies, the rest of it from another.

        A retry before the first token repeats the call. After tokens went out it
        resumes: the new replica gets the prompt plus the tokens already sent and
        continues, and its deltas are renumbered so usage counts the whole stream.
        """
        retry = self._spec.router.retry
        stall_s = self._spec.model(model).health.stall_timeout_s
        deadline = asyncio.get_running_loop().time() + request.timeout_s
        sent: list[int] = []
        for attempt in range(retry.attempts):
            already = len(sent)
            call = request if not sent else _resumed(request, sent, deadline)
            try:
                with stage_span(attr.REPLICA_CALL_SPAN, {attr.TIER: model, attr.REPLICA_ATTEMPT: attempt},
                                kind=SpanKind.CLIENT) as span:
                    # The replica's span continues this one across Ray.
                    traced = replace(call, trace_context=carrier(span)) if span.is_recording() else call
                    guarded = self._guarded(model, traced, attempt, deadline, stall_s, outcome.timeout_s)
                    async with aclosing(guarded) as stream:
                        async for delta in stream:
                            delta = _continued(delta, already)
                            sent.extend(delta.token_ids)
                            yield delta
                return
            except ReplicaLost as exc:
                lost = exc
            if sent and len(sent) >= request.max_tokens:  # only the final delta was lost
                yield _finished(sent, outcome, request)
                return
            if isinstance(lost, _NoReadyReplica) or (sent and not retry.resume):
                break
            pause = retry.backoff_s * 2**attempt
            if attempt + 1 == retry.attempts or asyncio.get_running_loop().time() + pause >= deadline:
                break
            outcome.retries += 1
            outcome.resumed_tokens = len(sent)
            metrics.RETRIES.labels(model, "resume" if sent else "retry").inc()
            await asyncio.sleep(pause)
        if sent:
            raise Aborted(f"request {request.request_id}: the replica of {model!r} failed after {len(sent)} tokens "
                          f"were sent and {attempt + 1} replica call(s) ({lost.message})")
        raise ReplicaLost(f"request {request.request_id}: {attempt + 1} replica call(s) to {model!r} failed; "
                          f"retry later ({lost.message})")

    async def _guarded(self, model: str, request: GenerationRequest, attempt: int, deadline: float,
                       stall_s: float | None, timeout_s: float) -> AsyncIterator[GenerationDelta]:
        """The backend's stream, ended at the request's deadline, as a lost replica when
        it goes quiet (`stall_s`) and, for a retry, when the model has no ready replica
        left to wait for."""
        async with aclosing(self._backend.stream(model, request)) as stream:
            if attempt:  # a replica just died: there may be none left
                stream = _first_unless(stream, self._none_ready[model], model)
            async for delta in _timed(stream, deadline, stall_s, model, request.request_id, timeout_s):
                yield delta

    @staticmethod
    def _cost(tier: Tier, latest: GenerationDelta, outcome: Outcome) -> float:
        """Usage on the latest delta is cumulative: it prices everything so far."""
        return tier.cost(latest.prompt_tokens or outcome.compressed.sent_tokens, latest.completion_tokens)

    def _enter(self) -> None:
        if self.draining:
            raise Unavailable("this router replica is draining (shutting down or being replaced); "
                              "retry: nothing was generated")
        limit = self._spec.router.limits.max_concurrent_requests
        if self.in_flight >= limit:
            metrics.OVERLOAD_REJECTIONS.labels("").inc()  # before admission: the model name is unchecked
            after = self.capacity.retry_after_s()
            raise ResourceExhausted(f"router has {self.in_flight} requests in flight; max_concurrent_requests is "
                                    f"{limit}; retry after {after:.1f} s", retry_after_s=after)
        self.in_flight += 1

    def _settle(self, billing: _Billing, outcome: Outcome) -> None:
        if billing.settled:
            return
        billing.settled = True
        if billing.ledger is not None:
            outcome.charged = billing.ledger.settle(billing.reservation, outcome.charged)
            outcome.budget_left = billing.ledger.remaining(self._metering.now())


def _record_compression(span, model: str, compressed: Compressed) -> None:
    ratio = compressed.sent_tokens / compressed.original_tokens if compressed.original_tokens else 1.0
    span.set_attribute(attr.COMPRESSION_RATIO, ratio)
    metrics.COMPRESSION_RATIO.labels(model).observe(ratio)


def _record_cost(outcome: Outcome, rpc: RouterRPC | None) -> None:
    """Cost, answering tier and uncertainty: on the metrics and the server span."""
    tier = outcome.answered_by or outcome.plan.tiers[0].name
    if outcome.charged:
        metrics.COST.labels(outcome.tenant, tier).inc(outcome.charged)
    if rpc:
        rpc.span.set_attributes({attr.COST: outcome.charged, attr.TIER: tier, attr.TENANT: outcome.tenant})
        if outcome.uncertainty:
            rpc.span.set_attribute(attr.UNCERTAINTY, outcome.uncertainty.score)


class _NoReadyReplica(ReplicaLost):
    """The model has no ready replica left: retrying now would only queue the call."""


async def _first_unless(stream: AsyncIterator[GenerationDelta], none_ready: asyncio.Event,
                        model: str) -> AsyncIterator[GenerationDelta]:
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


def _resumed(request: GenerationRequest, sent: list[int], deadline: float) -> GenerationRequest:
    return replace(request, continuation=request.continuation + tuple(sent), max_tokens=request.max_tokens - len(sent),
                   timeout_s=_left(deadline, request.request_id))


def _continued(delta: GenerationDelta, already: int) -> GenerationDelta:
    """A resumed replica counts the tokens sent before as prompt: count them as completion."""
    if not already:
        return delta
    return replace(delta, prompt_tokens=max(delta.prompt_tokens - already, 0),
                   completion_tokens=delta.completion_tokens + already)


def _finished(sent: list[int], outcome: Outcome, request: GenerationRequest) -> GenerationDelta:
    """The final delta of a stream whose replica died after its last token but before
    its finish: every token was sent, so it ended at max_tokens."""
    prompt = outcome.compressed.sent_tokens if outcome.compressed else 0
    return GenerationDelta("", [], finish_reason="length", prompt_tokens=prompt, completion_tokens=len(sent))


async def _timed(stream: AsyncIterator[GenerationDelta], deadline: float, stall_s: float | None, model: str,
                 request_id: str, timeout_s: float) -> AsyncIterator[GenerationDelta]:
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
                raise ReplicaLost(f"a replica of {model!r} sent no token for {stall_s:g} s "
                                  "(health.stall_timeout_s)") from None
            raise DeadlineExceeded(f"request {request_id} passed its deadline of {timeout_s:.3g} s") from None
        yield delta


def _left(deadline: float, request_id: str) -> float:
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise DeadlineExceeded(f"request {request_id} passed its deadline before its next cascade attempt")
    return left
