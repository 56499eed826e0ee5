"""The per-request decoding plan: which tiers, how many tokens, when to escalate.

Pure: given the tiers the request may use (one, or a cascade cheapest first),
the prompt size, the caller's `max_tokens`, what the tenant has left and how fast
it is spending, return a `Plan` whose worst-case cost fits the remaining budget,
or raise RESOURCE_EXHAUSTED. Degradation order when the full plan does not fit:
drop the most expensive cascade tiers, then clamp `max_tokens` on what is left.
A cascade whose expected latency (the tiers' latency profiles) exceeds the
request's timeout also loses its last tiers: a late answer is no answer.
The plan never raises `max_tokens` above the caller's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shardline.errors import ResourceExhausted
from shardline.policies.decoding.costs import Tier

# A tenant spending at twice its pace (or faster) no longer escalates at all.
PACE_FOR_NO_ESCALATION = 2.0


@dataclass(frozen=True, slots=True)
class Plan:
    tiers: tuple[Tier, ...]
    """Tiers to try in order; more than one is a cascade."""
    max_tokens: int
    escalate_above: float
    """Escalate to the next tier when uncertainty exceeds this (1.0: never)."""
    reserve: float
    """Worst-case cost of running every tier to `max_tokens`."""

    @property
    def cascade(self) -> bool:
        return len(self.tiers) > 1


def worst_case(tiers: Sequence[Tier], input_tokens: int, max_tokens: int) -> float:
    return sum(t.cost(input_tokens, max_tokens) for t in tiers)


def make_plan(
    tiers: Sequence[Tier],
    input_tokens: int,
    max_tokens: int,
    remaining: float | None,
    escalate_above: float = 1.0,
    pace: float = 1.0,
    tenant: str = "",
    timeout_s: float | None = None,
) -> Plan:
    """Plan for `tiers` (cheapest first); `remaining=None` means unmetered."""
    threshold = paced_threshold(escalate_above, pace)
    tiers = within_deadline(tiers, input_tokens, max_tokens, timeout_s)
    if remaining is None:
        return Plan(tuple(tiers), max_tokens, threshold, worst_case(tiers, input_tokens, max_tokens))
    for n in range(len(tiers), 0, -1):
        used = tuple(tiers[:n])
        tokens = min(max_tokens, _affordable(used, input_tokens, remaining))
        if tokens >= max_tokens or (n == 1 and tokens >= 1):
            return Plan(used, tokens, threshold if n > 1 else 1.0, worst_case(used, input_tokens, tokens))
    cheapest = tiers[0]
    raise ResourceExhausted(
        f"tenant {tenant!r} has {remaining:.6g} credits left; the cheapest plan ({cheapest.name}, "
        f"{input_tokens} prompt tokens + 1 output token) costs {cheapest.cost(input_tokens, 1):.6g}"
    )


def within_deadline(
    tiers: Sequence[Tier], input_tokens: int, max_tokens: int, timeout_s: float | None
) -> Sequence[Tier]:
    """The longest prefix of `tiers` expected to finish within `timeout_s` (at least one)."""
    if timeout_s is None:
        return tiers
    total = 0.0
    for n, tier in enumerate(tiers):
        total += tier.latency_s(input_tokens, max_tokens)
        if total > timeout_s:
            return tiers[: max(n, 1)]
    return tiers


def paced_threshold(escalate_above: float, pace: float) -> float:
    """Raise the escalation threshold toward 1 as a tenant outspends its pace."""
    excess = min(max(pace - 1.0, 0.0) / (PACE_FOR_NO_ESCALATION - 1.0), 1.0)
    return escalate_above + (1.0 - escalate_above) * excess


def should_escalate(plan: Plan, attempt: int, uncertainty: float) -> bool:
    """After tier `attempt` answered: try the next one?"""
    return attempt + 1 < len(plan.tiers) and uncertainty > plan.escalate_above


def _affordable(tiers: Sequence[Tier], input_tokens: int, credits: float) -> int:
    """Most output tokens every tier in `tiers` can produce within `credits` together."""
    combined = Tier(
        "+".join(t.name for t in tiers), sum(t.input_per_1k for t in tiers), sum(t.output_per_1k for t in tiers)
    )
    return combined.affordable_output(input_tokens, credits)
