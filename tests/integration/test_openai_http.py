"""The OpenAI-compatible HTTP API on the real stack (vLLM, demo spec), with the
official `openai` client: completions, chat (fallback template: the trained
models have none), streaming, and a typed error.
"""

import openai
import pytest

from shardline.models import tasks

pytestmark = pytest.mark.integration


@pytest.fixture
def client(deployment):
    with openai.OpenAI(base_url=deployment.http_url, api_key="unused", max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture
def item():
    return tasks.items_for_length(seed=3, n=1, approx_words=60)[0]


def test_models_lists_models_and_cascades(client):
    assert {m.id for m in client.models.list().data} == {"kv-large", "kv-small", "kv-auto"}


def test_completion_answers_like_grpc(client, deployment, item):
    reply = client.completions.create(model="kv-large", prompt=item.prompt, max_tokens=8, temperature=0)
    with deployment.client() as grpc_client:
        same = grpc_client.generate("kv-large", item.prompt, max_tokens=8, temperature=0)
    assert reply.choices[0].text == same.text and tasks.score(item, reply.choices[0].text)
    assert reply.usage.prompt_tokens == same.usage.prompt_tokens and reply.usage.completion_tokens > 0
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_completion_streams_with_usage(client, item):
    stream = client.completions.create(
        model="kv-small",
        prompt=item.prompt,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert len(chunks) > 2 and chunks[-1].choices == [] and 1 <= chunks[-1].usage.completion_tokens <= 8
    whole = client.completions.create(model="kv-small", prompt=item.prompt, max_tokens=8, temperature=0)
    assert text == whole.choices[0].text


def test_chat_streams_through_the_cascade_with_a_report(client):
    messages = [{"role": "user", "content": "The code of amber is 4 8 2 1 ."}]
    stream = client.chat.completions.create(
        model="kv-auto",
        messages=messages,
        max_tokens=6,
        temperature=0,
        stream=True,
        extra_headers={"x-shardline-tenant": "demo"},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason
    report = chunks[-1].model_extra["shardline"]["report"]
    assert report["decoding"]["tenant"] == "demo" and report["decoding"]["answered_by"] in ("kv-small", "kv-large")
    reply = client.chat.completions.create(model="kv-small", messages=messages, max_tokens=6, temperature=0)
    assert reply.choices[0].message.content and reply.usage.prompt_tokens > 5


def test_prompt_over_the_context_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="kv-large", prompt="word " * 3000, max_tokens=4)
    error = info.value.body
    assert info.value.status_code == 400 and error["type"] == "invalid_request_error"
    assert "2048" in error["message"] or "2047" in error["message"]
