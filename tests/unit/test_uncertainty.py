"""The uncertainty score alone: range, ordering, components, spilled-energy identities."""

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardline.generation import TokenLogprob
from shardline.policies.uncertainty import max_spill, normalise, score


def step(p_top, p_second):
    return TokenLogprob(math.log(p_top), (math.log(p_top), math.log(p_second)))


def test_confident_answer_scores_low_and_unsure_high():
    sure = score([step(0.99, 0.005)] * 6)
    unsure = score([step(0.99, 0.005)] * 3 + [step(0.4, 0.35)] * 3)
    assert sure.score < 0.05 < 0.4 < unsure.score
    assert set(sure.components) == {"mean_nll", "low_quantile_prob", "min_margin", "min_window_prob"}
    assert unsure.components["min_margin"] == pytest.approx(math.log(0.4 / 0.35))


def test_no_tokens_means_fully_uncertain():
    assert score([]).score == 1.0


def test_spill_matches_the_definition_on_full_logits():
    rng = random.Random(0)
    logits = [[rng.gauss(0, 2) for _ in range(8)] for _ in range(5)]
    chosen = [max(range(8), key=row.__getitem__) for row in logits]
    steps = [TokenLogprob(row[c], tuple(sorted(row, reverse=True))) for row, c in zip(logits, chosen)]
    lse = [math.log(sum(math.exp(v) for v in row)) for row in logits]
    expected = max(lse[i + 1] - logits[i][chosen[i]] for i in range(4))
    assert max_spill(steps) == pytest.approx(expected)
    assert "max_spill" in score(steps, raw_logits=True).components


def test_top_k_logsumexp_is_a_lower_bound():
    row = [3.0, 1.0, 0.5, -1.0]
    full = math.log(sum(math.exp(v) for v in row))
    top2 = TokenLogprob(3.0, (3.0, 1.0))
    assert normalise(top2).logprob >= 3.0 - full  # normalising over fewer values overestimates


logprob = st.floats(-20.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(logprob, logprob), min_size=1, max_size=64), st.booleans())
def test_score_is_always_in_unit_interval(pairs, raw):
    steps = [TokenLogprob(a, tuple(sorted((a, b), reverse=True))) for a, b in pairs]
    assert 0.0 <= score(steps, raw_logits=raw).score <= 1.0


def test_a_fitted_mix_replaces_the_plain_mean_and_follows_its_weights():
    from shardline.spec.policies import UncertaintyMix

    answer = [step(0.9, 0.05)] * 3 + [step(0.5, 0.3)]
    plain = score(answer)
    trusting_nll = UncertaintyMix(weights={"mean_nll": 4.0}, mean={"mean_nll": 0.1}, std={"mean_nll": 0.05}, bias=-1)
    z = -1 + 4.0 * (plain.components["mean_nll"] - 0.1) / 0.05
    mixed = score(answer, mix=trusting_nll)
    assert mixed.components == plain.components
    assert mixed.score == pytest.approx(1 / (1 + math.exp(-z)))
    # A negative weight on the same component turns the ranking around.
    flipped = UncertaintyMix(weights={"mean_nll": -4.0}, mean={"mean_nll": 0.1}, std={"mean_nll": 0.05})
    sure = [step(0.99, 0.005)] * 4
    assert score(sure, mix=trusting_nll).score < mixed.score
    assert score(sure, mix=flipped).score > score(answer, mix=flipped).score


def test_a_mix_with_spill_reads_the_raw_logits_component():
    from shardline.spec.policies import UncertaintyMix

    logits = [TokenLogprob(5.0, (5.0, 1.0)), TokenLogprob(2.0, (9.0, 2.0))]
    mix = UncertaintyMix(weights={"max_spill": 1.0}, mean={"max_spill": 0.0}, std={"max_spill": 1.0})
    result = score(logits, raw_logits=True, mix=mix)
    assert result.score == pytest.approx(1 / (1 + math.exp(-result.components["max_spill"])))
