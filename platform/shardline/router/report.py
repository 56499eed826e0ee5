"""The pipeline's `Outcome` as the `PolicyReport` proto on responses."""

from __future__ import annotations

from shardline.router.pipeline import Outcome
from shardline.v1 import inference_pb2 as pb


def policy_report(outcome: Outcome) -> pb.PolicyReport:
    report = pb.PolicyReport()
    if outcome.compressed is not None:
        c = outcome.compressed
        report.compression.CopyFrom(pb.CompressionReport(
            policy=c.policy, original_prompt_tokens=c.original_tokens, sent_prompt_tokens=c.sent_tokens,
            skipped=c.skipped))
    if outcome.plan is not None:
        report.decoding.CopyFrom(_decoding(outcome))
    if outcome.uncertainty is not None:
        report.uncertainty.CopyFrom(pb.Uncertainty(score=outcome.uncertainty.score,
                                                   components=outcome.uncertainty.components))
    if outcome.retries:
        report.recovery.CopyFrom(pb.RecoveryReport(retries=outcome.retries, resumed_tokens=outcome.resumed_tokens))
    return report


def _decoding(outcome: Outcome) -> pb.DecodingReport:
    plan = outcome.plan
    return pb.DecodingReport(
        tiers=[t.name for t in plan.tiers], max_tokens=plan.max_tokens, escalate_above=plan.escalate_above,
        answered_by=outcome.answered_by, escalated=outcome.escalated, tenant=outcome.tenant,
        cost_charged=outcome.charged, budget_left=outcome.budget_left or 0.0,
    )
