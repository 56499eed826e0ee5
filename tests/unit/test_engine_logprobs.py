"""The vLLM adapter's logprob conversion, on vLLM-shaped values (no engine)."""

from types import SimpleNamespace as Logprob

from shardline.engine.vllm_engine import prompt_nll, token_logprobs
from shardline.generation import GenerationDelta, TokenLogprob


def test_sampled_value_and_top_k_in_rank_order():
    # vLLM returns the top-k plus the sampled token (here rank 3, outside the top-2).
    step = {7: Logprob(logprob=-0.1, rank=1), 9: Logprob(logprob=-2.5, rank=2), 4: Logprob(logprob=-3.0, rank=3)}
    assert token_logprobs([4], [step], k=2) == [TokenLogprob(-3.0, (-0.1, -2.5))]
    assert token_logprobs([4], [step], k=0) == [] and token_logprobs([4], None, k=2) == []


def test_prompt_nll_pairs_tokens_with_character_spans():
    ids, offsets = [1, 5, 6], [(0, 0), (0, 3), (4, 8)]
    logprobs = [None, {5: Logprob(logprob=-1.5, rank=2)}, {6: Logprob(logprob=-0.25, rank=1)}]
    assert prompt_nll(ids, offsets, logprobs) == [(0, 3, 1.5), (4, 8, 0.25)]
    assert prompt_nll(ids, offsets, None) == []


def test_merged_deltas_keep_every_logprob():
    a = GenerationDelta("a", [1], logprobs=[TokenLogprob(-0.1)], prompt_nll=[(0, 1, 2.0)])
    b = GenerationDelta("b", [2], finish_reason="stop", logprobs=[TokenLogprob(-0.2)])
    merged = a.merge(b)
    assert merged.logprobs == [TokenLogprob(-0.1), TokenLogprob(-0.2)] and merged.prompt_nll == [(0, 1, 2.0)]
