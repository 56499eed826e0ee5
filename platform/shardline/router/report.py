"""What the pipeline decided for one request (`RequestReport`), and that as the
`PolicyReport` proto on responses."""

from __future__ import annotations

from dataclasses import dataclass

from shardline.policies import uncertainty
from shardline.policies.compression import Compressed
from shardline.policies.decoding.plan import Plan
from shardline.v1 import inference_pb2 as pb


@dataclass
class RequestReport:
    """What the pipeline decided for one request and what it cost; complete when the
    final delta is yielded. Both doors send it as the `PolicyReport` proto."""

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


def policy_report(decided: RequestReport) -> pb.PolicyReport:
    report = pb.PolicyReport()
    if decided.compressed is not None:
        c = decided.compressed
        report.compression.CopyFrom(
            pb.CompressionReport(
                policy=c.policy,
                original_prompt_tokens=c.original_tokens,
                sent_prompt_tokens=c.sent_tokens,
                skipped=c.skipped,
            )
        )
    if decided.plan is not None:
        report.decoding.CopyFrom(_decoding(decided))
    if decided.uncertainty is not None:
        report.uncertainty.CopyFrom(
            pb.Uncertainty(score=decided.uncertainty.score, components=decided.uncertainty.components)
        )
    if decided.retries:
        report.recovery.CopyFrom(pb.RecoveryReport(retries=decided.retries, resumed_tokens=decided.resumed_tokens))
    return report


def _decoding(decided: RequestReport) -> pb.DecodingReport:
    plan = decided.plan
    return pb.DecodingReport(
        tiers=[t.name for t in plan.tiers],
        max_tokens=plan.max_tokens,
        escalate_above=plan.escalate_above,
        answered_by=decided.answered_by,
        escalated=decided.escalated,
        tenant=decided.tenant,
        cost_charged=decided.charged,
        budget_left=decided.budget_left or 0.0,
    )
