"""Compression policies alone: layout, skip rules, each policy, and invariants (hypothesis)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_scorers import hash_embed, word_nll
from shardline.models import tasks
from shardline.policies.compression import Compressed, Options, Scorers, compress
from shardline.policies.compression.units import layout

QUESTION = "Question : what is the code of amber ? Answer :"


def scorers(prompt):
    return Scorers(embed=hash_embed, token_nll=word_nll(prompt, digit=5.0, word=0.5))


def haystack(filler_sentences=400, seed=0):
    rng = random.Random(seed)
    item = tasks.make_item(rng, facts=6, filler_sentences=filler_sentences)
    return item


def run(prompt, policy, ratio=4.0, **options):
    opts = Options(policy=policy, target_ratio=ratio, min_prompt_tokens=options.pop("min_prompt_tokens", 10), **options)
    return compress(prompt, opts, scorers(prompt))


def test_layout_units_cover_the_prompt_in_order():
    prompt = "First sentence. Second one!\nThird? " + QUESTION
    lay = layout(prompt)
    assert "".join(lay.text(u) for u in lay.units) == prompt
    assert lay.question == QUESTION[QUESTION.index("Question") :]


def test_question_code_json_and_client_spans_are_protected():
    prompt = (
        "System: be brief. Filler goes here. ```x = 1. y = 2.``` More filler. "
        '{"type": "object", "properties": {}} Even more. Keep this part. ' + QUESTION
    )
    keep = prompt.index("Keep this part.")
    lay = layout(prompt, system_chars=len("System: be brief."), protected=[(keep, keep + 15)])
    protected = [lay.text(u) for u in lay.units if u.protected]
    assert protected[0].startswith("System: be brief.")
    assert any("```x = 1. y = 2.```" in p for p in protected)
    assert any('{"type": "object", "properties": {}}' in p for p in protected)
    assert any("Keep this part." in p for p in protected)
    assert protected[-1].endswith("Answer :")


@pytest.mark.parametrize("policy", ["truncate_middle", "extractive", "self_information"])
def test_policies_reach_the_target_ratio_and_keep_the_question(policy):
    item = haystack()
    out = run(item.prompt, policy, ratio=4.0)
    assert out.original_tokens / out.sent_tokens >= 3.9
    assert out.text.endswith(QUESTION.split("amber")[0][-10:] + item.prompt.split("code of ")[-1])
    assert not out.skipped


def test_extractive_keeps_the_needle_that_answers_the_question():
    item = haystack(seed=3)
    target = item.prompt.split("what is the code of ")[1].split(" ?")[0]
    needle = f"The code of {target} is {item.answer} ."
    assert needle in run(item.prompt, "extractive", ratio=8.0).text


def test_self_information_keeps_surprising_sentences():
    item = haystack(seed=4)
    out = run(item.prompt, "self_information", ratio=4.0)
    assert f"is {item.answer} ." in out.text


def test_short_prompts_and_policy_none_are_sent_unchanged():
    prompt = haystack(filler_sentences=5).prompt
    assert run(prompt, "extractive", min_prompt_tokens=10_000).skipped.startswith("prompt has")
    none = run(prompt, "none")
    assert (none.text, none.skipped) == (prompt, "policy is none")


def test_mostly_protected_prompt_is_skipped():
    prompt = "Some filler text. " + "```" + "code line . " * 50 + "``` " + QUESTION
    out = run(prompt, "extractive")
    assert out.text == prompt and out.skipped == "protected spans cap the ratio"


def test_extractive_needs_an_embedder():
    with pytest.raises(ValueError, match="needs an embedder"):
        compress(haystack().prompt, Options(min_prompt_tokens=0), Scorers())


def test_compression_is_deterministic():
    prompt = haystack(seed=5).prompt
    assert run(prompt, "extractive") == run(prompt, "extractive")


sentence = st.text(alphabet=st.sampled_from("abc xyz 123"), min_size=1, max_size=30).map(lambda s: s.strip() + ".")
prompts = st.lists(sentence, min_size=1, max_size=60).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(
    prompt=prompts,
    policy=st.sampled_from(["truncate_middle", "extractive", "self_information"]),
    ratio=st.floats(1.0, 20.0),
    data=st.data(),
)
def test_output_is_never_longer_and_keeps_protected_spans(prompt, policy, ratio, data):
    start = data.draw(st.integers(0, len(prompt)))
    end = data.draw(st.integers(start, len(prompt)))
    system = data.draw(st.integers(0, len(prompt)))
    out: Compressed = run(
        prompt, policy, ratio=ratio, min_prompt_tokens=0, protected=((start, end),), system_chars=system
    )
    assert len(out.text) <= len(prompt)
    assert out.sent_tokens <= out.original_tokens
    assert prompt[start:end] in out.text
    assert out.text.startswith(prompt[:system])
    assert out.text.endswith(layout(prompt).question)
    if not out.skipped:
        assert out.sent_tokens < out.original_tokens
