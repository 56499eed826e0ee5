"""Real pretrained models on the real stack (deployments/demo.yaml, prepared by
`make models`): Gemma 3 270M as a TP=2 replica and SmolLM2-135M-Instruct, both
verified against the manifest `make models` signed, answering questions whose
answers a reader can check.
"""

import openai
import pytest

from live import doc_examples, run_doc_example
from shardline.models import questions
from shardline.router.scorers import token_counter
from shardline.v1 import inference_pb2 as pb

pytestmark = pytest.mark.integration
BLOCKS = doc_examples(pretrained=True)


def test_the_base_model_at_tp2_answers_a_fact_and_continues_a_sequence(pretrained):
    with pretrained.client() as client:
        fact = client.generate(
            "gemma-3-270m", "Question: What is the capital of Japan?\nAnswer:", max_tokens=4, temperature=0
        )
        count = client.generate("gemma-3-270m", "1, 2, 3, 4, 5,", max_tokens=9, temperature=0)
    assert fact.text.split()[0] == "Tokyo", fact.text
    assert count.text.startswith(" 6, 7, 8"), count.text
    # The tokenizer adds Gemma's <bos> (the GGUF conversion drops it; without it the
    # model answers "?\n?\n..."): 12 words and marks + <bos>.
    assert fact.usage.prompt_tokens == 13


def test_the_instruct_model_chats_with_its_own_template(pretrained):
    with openai.OpenAI(base_url=pretrained.http_url, api_key="unused", max_retries=0, timeout=120) as client:
        reply = client.chat.completions.create(
            model="smollm2-135m-instruct",
            temperature=0,
            max_tokens=16,
            messages=[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        )
    assert "Paris" in reply.choices[0].message.content, reply.choices[0].message.content
    # SmolLM2's template wraps the turn in <|im_start|>/<|im_end|> and a system turn:
    # far more tokens than the 12 of the question alone.
    assert reply.usage.prompt_tokens > 20


def test_extractive_compression_keeps_the_answer_of_a_long_prompt(pretrained):
    """demo.yaml compresses SmolLM2's prompts of 1500+ tokens 4x (extractive): a
    2k-token passage of real prose with one fact, then a question about it. Seed 2000000
    is item 0 of bench/compression_pretrained.py's 2k-token set, answered right both
    ways there."""
    count = token_counter(f"{pretrained.spec.model('smollm2-135m-instruct').path}/tokenizer.json")
    item = questions.needle_within(2_000_000, 2000, 0.1, count)
    with pretrained.client() as client:
        compressed = client.generate("smollm2-135m-instruct", item.prompt, max_tokens=16, temperature=0)
        whole = client.generate(
            "smollm2-135m-instruct",
            item.prompt,
            max_tokens=16,
            temperature=0,
            compression=pb.CompressionOptions(policy="none"),
        )
    report = compressed.report.compression
    assert report.policy == "extractive" and not report.skipped
    assert report.original_prompt_tokens >= 3.5 * report.sent_prompt_tokens
    assert compressed.usage.prompt_tokens < whole.usage.prompt_tokens / 3  # what the engine was sent
    assert questions.score(item, whole.text), whole.text
    assert questions.score(item, compressed.text), compressed.text


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_doc_example_on_the_pretrained_models_runs(pretrained, code):
    run_doc_example(pretrained, code)
