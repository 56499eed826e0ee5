"""Cost-aware decoding alone: costs, ledger, plans, escalation; budget invariants (hypothesis)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardline.errors import ResourceExhausted
from shardline.policies.decoding.budget import Ledger
from shardline.policies.decoding.costs import Tier
from shardline.policies.decoding.plan import make_plan, paced_threshold, should_escalate, worst_case

SMALL = Tier("kv-small", input_per_1k=0.1, output_per_1k=0.2)
LARGE = Tier("kv-large", input_per_1k=1.0, output_per_1k=2.0)


def test_tier_cost_is_per_thousand_tokens():
    assert LARGE.cost(1000, 500) == pytest.approx(2.0)


def test_unmetered_plan_keeps_everything():
    plan = make_plan([SMALL, LARGE], 100, 64, remaining=None, escalate_above=0.4)
    assert (plan.tiers, plan.max_tokens, plan.escalate_above, plan.cascade) == ((SMALL, LARGE), 64, 0.4, True)


def test_plan_drops_the_large_tier_before_clamping_tokens():
    need_both = worst_case([SMALL, LARGE], 100, 64)
    plan = make_plan([SMALL, LARGE], 100, 64, remaining=need_both * 0.9)
    assert (plan.tiers, plan.max_tokens, plan.escalate_above) == ((SMALL,), 64, 1.0)


def test_plan_clamps_max_tokens_to_the_budget():
    plan = make_plan([LARGE], 1000, 1000, remaining=1.2)
    assert plan.max_tokens == 99 and plan.reserve <= 1.2


def test_plan_that_cannot_pay_one_token_is_resource_exhausted():
    with pytest.raises(
        ResourceExhausted,
        match=r"tenant 'acme' has 0.001 credits left; the cheapest plan "
        r"\(kv-small, 100 prompt tokens \+ 1 output token\) costs 0.0102",
    ):
        make_plan([SMALL, LARGE], 100, 64, remaining=0.001, tenant="acme")


def test_cascade_that_would_miss_the_deadline_drops_its_last_tier():
    slow = Tier("kv-large", 1.0, 2.0, ttft_ms=50, prefill_ms_per_1k=100, per_token_ms=20)
    fast = Tier("kv-small", 0.1, 0.2, ttft_ms=10, per_token_ms=5)
    assert slow.latency_s(1000, 10) == pytest.approx(0.35)
    assert make_plan([fast, slow], 1000, 10, None, timeout_s=1.0).tiers == (fast, slow)
    assert make_plan([fast, slow], 1000, 10, None, timeout_s=0.3).tiers == (fast,)
    assert make_plan([slow], 1000, 10, None, timeout_s=0.01).tiers == (slow,)  # one tier always tries


def test_pacing_raises_the_escalation_threshold():
    assert paced_threshold(0.5, 1.0) == 0.5
    assert paced_threshold(0.5, 1.5) == pytest.approx(0.75)
    assert paced_threshold(0.5, 3.0) == 1.0


def test_escalation_only_above_threshold_and_before_the_last_tier():
    plan = make_plan([SMALL, LARGE], 10, 8, remaining=None, escalate_above=0.5)
    assert should_escalate(plan, 0, 0.6) and not should_escalate(plan, 0, 0.5)
    assert not should_escalate(plan, 1, 0.99)


def test_ledger_reserves_settles_and_rolls_over():
    ledger = Ledger("acme", budget=1.0, window_s=10.0)
    r = ledger.reserve(0.6, now=1.0)
    assert ledger.remaining(1.0) == pytest.approx(0.4)
    with pytest.raises(ResourceExhausted, match="tenant 'acme' has 0.4 credits left of 1; this request may cost 0.5"):
        ledger.reserve(0.5, now=1.0)
    assert ledger.settle(r, 0.25) == 0.25
    assert ledger.remaining(2.0) == pytest.approx(0.75)
    assert ledger.pace(5.0) == pytest.approx(0.5)
    assert ledger.remaining(11.0) == 1.0


@settings(max_examples=300, deadline=None)
@given(
    requests=st.lists(
        st.tuples(st.integers(1, 4000), st.integers(1, 512), st.floats(0, 1), st.booleans()), min_size=1, max_size=40
    ),
    budget=st.floats(0.01, 20.0),
)
def test_budget_and_max_tokens_are_never_exceeded(requests, budget):
    ledger = Ledger("t", budget=budget, window_s=1e9)
    for prompt, max_tokens, used_share, cascade in requests:
        tiers = [SMALL, LARGE] if cascade else [LARGE]
        try:
            plan = make_plan(tiers, prompt, max_tokens, ledger.remaining(0.0), 0.5, ledger.pace(0.0))
        except ResourceExhausted:
            continue
        assert 1 <= plan.max_tokens <= max_tokens
        reservation = ledger.reserve(plan.reserve, 0.0)
        produced = max(1, int(plan.max_tokens * used_share))
        actual = sum(t.cost(prompt, produced) for t in plan.tiers)
        ledger.settle(reservation, actual)
        assert ledger.spent <= budget + 1e-9
