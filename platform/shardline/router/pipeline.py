"""The router's request path: one pipeline of named stages.

    admission -> compression -> decoding_plan -> attempt (per cascade tier) -> replica call

The replica call, with its retry or resume on another replica when one dies
mid-stream, is `replica_call.py`. Admission validates the request (validation.py)
and takes a slot on every model the request may call (router/capacity.py):
a model already holding ready replicas x (max_ongoing + max_queued) requests rejects
at once with RESOURCE_EXHAUSTED and retry advice.

`Pipeline.run(request, timeout_s, report)` takes the request proto and a timeout
in seconds (no gRPC context), so both front doors (router/grpc/, router/http/)
run the same pipeline, and each stage runs in its own span. Policy logic lives in `policies/`;
here the stages gather what the policies need (token counts, embeddings, prompt
logprobs, budgets), apply their decisions and fill `report` for the response.

Money: the plan's worst case is reserved from the tenant's ledger before the
first replica call and settled with the actual cost just before the final delta
goes out (or when the request fails or is cancelled), so the report on the last
chunk is complete and concurrent requests can never overspend. The ledger may be
another process (the deployment's shared ledger, serve/ledger.py): its calls are
awaited, a reservation is leased for the request's timeout plus LEASE_MARGIN_S,
and a settle that cannot reach it leaves the reservation to be charged in full
when the lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace

from shardline.errors import RequestError, ResourceExhausted, Unavailable
from shardline.generation import GenerationDelta, GenerationRequest
from shardline.policies import uncertainty
from shardline.policies.compression import NONE, SELF_INFORMATION, Compressed, Scorers, compress, skip_reason
from shardline.policies.compression.extractive import Embedder
from shardline.policies.decoding.costs import Tier
from shardline.policies.decoding.plan import make_plan, should_escalate
from shardline.router import scorers
from shardline.router.backend import Backend
from shardline.router.capacity import Capacity, Held
from shardline.router.metering import Metering
from shardline.router.prompt_blocks import prompt_blocks
from shardline.router.replica_call import ReplicaCaller, time_left
from shardline.router.report import RequestReport
from shardline.router.validation import admit, compression_options, tenant
from shardline.spec.deployment import DeploymentSpec
from shardline.telemetry import attributes as attr
from shardline.telemetry import metrics
from shardline.telemetry.requests import RouterRPC
from shardline.telemetry.tracing import stage_span
from shardline.v1 import inference_pb2 as pb

logger = logging.getLogger(__name__)

TOP_LOGPROBS = 2  # top-1 and top-2: enough for the margin signal
SPECIAL_TOKENS = 2  # BOS/EOS the engine may add to the counted prompt
LEASE_MARGIN_S = 30.0
"""A reservation outlives its request's timeout by this much before the ledger
charges it in full: room for the final settle to retry past a ledger restart."""


@dataclass
class _Billing:
    tenant: str
    reservation: int | None
    settled: bool = False


class Pipeline:
    def __init__(
        self, spec: DeploymentSpec, backend: Backend, embed: Embedder | None = None, metering: Metering | None = None
    ):
        self._spec = spec
        self._backend = backend
        self._embed = embed
        self._metering = metering or Metering(spec)
        self.in_flight = 0
        self.draining = False
        """Set when the router drains: new calls are refused (UNAVAILABLE), live ones go on."""
        self.capacity = Capacity(spec)
        self._replicas = ReplicaCaller(spec, backend)
        self.ready = {m.name: 0 for m in spec.models}

    @property
    def ready(self) -> dict[str, int]:
        """Ready replicas per model, as the router's health loop last saw them."""
        return self._ready

    @ready.setter
    def ready(self, value: dict[str, int]) -> None:
        self._ready = value
        self._replicas.readiness(value)

    async def run(
        self,
        request: pb.GenerateRequest,
        timeout_s: float,
        report: RequestReport,
        rpc: RouterRPC | None = None,
        session: str = "",
    ) -> AsyncIterator[GenerationDelta]:
        """Every stage runs in its own span under the current one (the front door's
        server span); `rpc`, when given, gets the admitted request and every delta.
        `session`: the client's session key (`wire.SESSION`), for session affinity."""
        self._enter()
        held: Held | None = None
        try:
            with stage_span(attr.ADMISSION_SPAN):
                generation = self.admission(request, timeout_s, session)
                held = self.capacity.take((t.name for t in self._metering.tiers(request.model)), self._admitting())
            report.request_id, report.timeout_s = generation.request_id, generation.timeout_s
            if rpc:
                rpc.admitted(request.model, generation)
            deadline = asyncio.get_running_loop().time() + generation.timeout_s
            with stage_span(attr.COMPRESSION_SPAN) as span:
                report.compressed = await self.compression(request, generation, report)
                _record_compression(span, request.model, report.compressed)
            with stage_span(attr.DECODING_PLAN_SPAN) as span:
                billing = await self.decoding_plan(request, generation, report)
                span.set_attributes({attr.TENANT: report.tenant, attr.TIER: [t.name for t in report.plan.tiers]})
            try:
                attempts = self._attempts(generation, request.uncertainty, deadline, report, billing)
                async with aclosing(attempts) as stream:
                    async for delta in stream:
                        if rpc:
                            rpc.delta(delta)
                        yield delta
            finally:
                await self._settle(billing, report)
                _record_cost(report, rpc)
        finally:
            self.in_flight -= 1
            if held is not None:
                self.capacity.give(held, finished=bool(report.answered_by))

    def admission(self, request: pb.GenerateRequest, timeout_s: float, session: str = "") -> GenerationRequest:
        generation = admit(request, self._spec, timeout_s, session)
        tiers = self._metering.tiers(request.model)
        missing = [t.name for t in tiers if not self.ready.get(t.name) and not self._scales_from_zero(t.name)]
        if missing:
            raise Unavailable(f"model {missing[0]!r} has no ready replica yet; retry later")
        return generation

    def _scales_from_zero(self, model: str) -> bool:
        """A model with `replicas.min` 0: with no replica, its calls are held while one
        starts (replica_call.py), not refused."""
        return self._spec.model(model).replicas.min == 0

    def _admitting(self) -> dict[str, int]:
        """Ready replicas per model for admission: a model scaled to zero admits what
        its first replica will hold."""
        return {m: n or int(self._scales_from_zero(m)) for m, n in self.ready.items()}

    async def compression(
        self, request: pb.GenerateRequest, generation: GenerationRequest, report: RequestReport
    ) -> Compressed:
        options = compression_options(request, self._spec)
        first = self._metering.tiers(request.model)[0].name
        count = scorers.counter_for(self._spec.model(first))
        found = Scorers(count=count, embed=self._embed)
        if options.policy == SELF_INFORMATION and not skip_reason(count(generation.prompt), options):
            scorer = scorers.cheapest_tier(self._spec, first)
            found = replace(
                found, token_nll=await scorers.prompt_nll(self._backend, scorer, generation, generation.prompt)
            )
            report.scoring_cost = self._metering.tier(scorer).cost(len(found.token_nll) + SPECIAL_TOKENS, 1)
        if options.policy == NONE:  # only a token count: not worth a thread hop
            return compress(generation.prompt, options, found)
        # MiniLM and the tokenizer are CPU work: keep the event loop serving others.
        return await asyncio.to_thread(compress, generation.prompt, options, found)

    async def decoding_plan(
        self, request: pb.GenerateRequest, generation: GenerationRequest, report: RequestReport
    ) -> _Billing:
        report.tenant = self._metering.tenant(tenant(request)) or ""
        ledgers = self._metering.ledgers
        standing = await ledgers.standing(report.tenant) if report.tenant else None
        cascade = self._spec.policies.cascade(request.model)
        report.charged = report.scoring_cost
        report.plan = make_plan(
            self._metering.tiers(request.model),
            report.compressed.sent_tokens + SPECIAL_TOKENS,
            generation.max_tokens,
            standing.remaining - report.scoring_cost if standing else None,
            cascade.escalate_above if cascade else 1.0,
            standing.pace if standing else 1.0,
            report.tenant,
            generation.timeout_s,
        )
        if not standing:
            return _Billing("", None)
        amount, lease_s = report.plan.reserve + report.scoring_cost, generation.timeout_s + LEASE_MARGIN_S
        return _Billing(report.tenant, await ledgers.reserve(report.tenant, amount, lease_s))

    async def _attempts(
        self, generation: GenerationRequest, scored: bool, deadline: float, report: RequestReport, billing: _Billing
    ) -> AsyncIterator[GenerationDelta]:
        plan = report.plan
        scored = scored or plan.cascade
        base = replace(
            generation,
            prompt=report.compressed.text,
            max_tokens=plan.max_tokens,
            logprobs=TOP_LOGPROBS if scored else 0,
        )
        for index, tier in enumerate(plan.tiers):
            last = index == len(plan.tiers) - 1
            request = replace(
                base,
                timeout_s=time_left(deadline, generation.request_id),
                prefix_blocks=prompt_blocks(self._spec.model(tier.name), base.prompt),
            )
            with stage_span(attr.CASCADE_ATTEMPT_SPAN, {attr.TIER: tier.name, attr.CASCADE_ATTEMPT: index}) as span:
                async with aclosing(self.attempt(tier, request, last, report)) as stream:
                    async for delta in stream:
                        if delta.finish_reason is not None:
                            report.uncertainty = self._uncertainty(tier, delta) if scored else None
                            if report.uncertainty:
                                span.set_attribute(attr.UNCERTAINTY, report.uncertainty.score)
                            if not last and should_escalate(plan, index, report.uncertainty.score):
                                report.escalated = True
                                metrics.ESCALATIONS.labels(tier.name, plan.tiers[index + 1].name).inc()
                                break
                            report.answered_by = tier.name
                            await self._settle(billing, report)
                        yield delta
            if report.answered_by:
                return

    def _uncertainty(self, tier: Tier, final: GenerationDelta) -> uncertainty.Uncertainty:
        """The answer's score, with the tier's own fitted mix when its spec has one."""
        return uncertainty.score(final.logprobs, final.raw_logits, self._spec.model(tier.name).uncertainty)

    async def attempt(
        self, tier: Tier, request: GenerationRequest, last: bool, report: RequestReport
    ) -> AsyncIterator[GenerationDelta]:
        """One tier's answer: streamed when it is the last tier, else buffered into one
        delta (whose logprobs the escalation decision reads). The final delta carries
        every logprob of the answer either way."""
        buffered, latest, logprobs, charged = GenerationDelta("", []), None, [], False
        try:
            async with aclosing(self._replicas.stream(tier.name, request, report)) as stream:
                async for delta in stream:
                    latest = delta
                    logprobs.extend(delta.logprobs)
                    if delta.finish_reason is not None:
                        report.charged += self._cost(tier, latest, report)
                        charged = True
                    if last:
                        yield replace(delta, logprobs=logprobs) if delta.finish_reason else delta
                    else:
                        buffered = buffered.merge(delta)
            if not last:
                yield replace(buffered, logprobs=logprobs)
        finally:
            if not charged and latest is not None:  # failed or cancelled midway: pay for what was produced
                report.charged += self._cost(tier, latest, report)

    @staticmethod
    def _cost(tier: Tier, latest: GenerationDelta, report: RequestReport) -> float:
        """Usage on the latest delta is cumulative: it prices everything so far."""
        return tier.cost(latest.prompt_tokens or report.compressed.sent_tokens, latest.completion_tokens)

    def _enter(self) -> None:
        if self.draining:
            raise Unavailable(
                "this router replica is draining (shutting down or being replaced); retry: nothing was generated"
            )
        limit = self._spec.router.limits.max_concurrent_requests
        if self.in_flight >= limit:
            metrics.OVERLOAD_REJECTIONS.labels("").inc()  # before admission: the model name is unchecked
            after = self.capacity.retry_after_s()
            raise ResourceExhausted(
                f"router has {self.in_flight} requests in flight; max_concurrent_requests is "
                f"{limit}; retry after {after:.1f} s",
                retry_after_s=after,
            )
        self.in_flight += 1

    async def _settle(self, billing: _Billing, report: RequestReport) -> None:
        """Shielded: a cancelled request still settles (else its lease charges it in full)."""
        if billing.settled:
            return
        billing.settled = True
        if billing.reservation is None:
            return
        settle = self._metering.ledgers.settle(billing.tenant, billing.reservation, report.charged)
        try:
            settled = await asyncio.shield(settle)
        except RequestError as exc:
            logger.warning("tenant %r: settle failed (%s); the lease charges the reservation", billing.tenant, exc)
            return
        report.charged, report.budget_left = settled.charged, settled.remaining


def _record_compression(span, model: str, compressed: Compressed) -> None:
    ratio = compressed.sent_tokens / compressed.original_tokens if compressed.original_tokens else 1.0
    span.set_attribute(attr.COMPRESSION_RATIO, ratio)
    metrics.COMPRESSION_RATIO.labels(model).observe(ratio)


def _record_cost(report: RequestReport, rpc: RouterRPC | None) -> None:
    """Cost, answering tier and uncertainty: on the metrics and the server span."""
    tier = report.answered_by or report.plan.tiers[0].name
    if report.charged:
        metrics.COST.labels(report.tenant, tier).inc(report.charged)
    if rpc:
        rpc.span.set_attributes({attr.COST: report.charged, attr.TIER: tier, attr.TENANT: report.tenant})
        if report.uncertainty:
            rpc.span.set_attribute(attr.UNCERTAINTY, report.uncertainty.score)
