"""The OpenAI-compatible HTTP door on a real aiohttp server (port 0) over fake replicas,
driven by the official `openai` client. The server runs on the test's loop, so the
async client is used directly and the sync client only from a thread.
tests/integration/test_openai_http.py repeats the essentials on vLLM.
"""

import asyncio
import contextlib
import json
import shutil
import ssl
from pathlib import Path

import grpc
import httpx
import openai
import pytest

from builders import make_request, make_spec
from certs import make_pki
from fakes import start_fake_stack
from shardline.router.http import chat_template, openai_api
from shardline.v1 import inference_pb2_grpc as pb_grpc
from waiting import eventually_async

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "a" * 20


class Stack:
    def __init__(self, router, engine, token=None):
        self.router, self.engine = router, engine
        self.base_url = f"http://127.0.0.1:{router.http_port}/v1"
        self.client = openai.AsyncOpenAI(base_url=self.base_url, api_key=token or "unused", max_retries=0)


@contextlib.asynccontextmanager
async def http_stack(step_s=0.0, ready=True, token=None, **spec_overrides):
    router_fields = spec_overrides.pop("router", {})
    if "limits" in spec_overrides:
        router_fields["limits"] = spec_overrides.pop("limits")
    s = await start_fake_stack(
        step_s=step_s, refresh=ready, router={"port": 0, "http_port": 0, **router_fields}, **spec_overrides
    )
    if not ready:
        s.router._health_task.cancel()  # keep the router believing no replica is ready
        s.router.pipeline.ready = {}
    stack = Stack(s.router, s.engine, token)
    try:
        yield stack
    finally:
        await stack.client.close()
        await s.close()


async def test_models_lists_served_models():
    async with http_stack() as s:
        models = await s.client.models.list()
        one = await s.client.models.retrieve("tiny-llama")
    assert [m.id for m in models.data] == ["tiny-llama"] and one.owned_by == "shardline"


async def test_completion_returns_text_usage_and_report():
    async with http_stack() as s:
        reply = await s.client.completions.create(
            model="tiny-llama", prompt="a b c", max_tokens=4, extra_headers={"x-request-id": "r1"}
        )
    assert reply.choices[0].text == " a b c a" and reply.choices[0].finish_reason == "length"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (3, 4, 7)
    assert reply.id == "cmpl-r1" and reply.object == "text_completion"
    assert reply.model_extra["shardline"]["request_id"] == "r1"
    assert reply.model_extra["shardline"]["report"]["compression"]["policy"] == "none"


async def test_completion_streams_deltas_then_usage():
    async with http_stack() as s:
        stream = await s.client.completions.create(
            model="tiny-llama", prompt="a b c", max_tokens=4, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert texts == [" a", " b", " c", " a"]
    assert [c.choices[0].finish_reason for c in chunks[:4]] == [None, None, None, "length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert len({c.id for c in chunks}) == 1


async def test_chat_uses_the_fallback_template_without_one():
    async with http_stack() as s:
        reply = await s.client.chat.completions.create(
            model="tiny-llama",
            max_completion_tokens=5,
            messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}],
        )
    # The fake engine echoes the prompt's words: the rendered fallback template.
    assert reply.choices[0].message.content == " System: Be terse. User: hi"
    assert reply.choices[0].message.role == "assistant" and reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-") and reply.usage.prompt_tokens == 6


async def test_chat_streams_with_the_role_first():
    async with http_stack() as s:
        stream = await s.client.chat.completions.create(
            model="tiny-llama", max_tokens=3, stream=True, messages=[{"role": "user", "content": "x y"}]
        )
        chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content for c in chunks) == " User: x y"
    assert chunks[-1].choices[0].finish_reason == "length" and chunks[-1].object == "chat.completion.chunk"


def test_ignore_eos_reaches_the_sampling_params():
    body = openai_api.parse(openai_api.CompletionRequest, {"model": "m", "prompt": "p", "ignore_eos": True})
    assert openai_api.generate_request(body, "p", "r1").sampling.ignore_eos
    plain = openai_api.parse(openai_api.CompletionRequest, {"model": "m", "prompt": "p"})
    assert not openai_api.generate_request(plain, "p", "r2").sampling.ignore_eos


def test_tokenizer_chat_template_is_used_when_present(tmp_path):
    model = shutil.copytree(
        ROOT / "models" / "trained" / "kv-small", tmp_path / "m", ignore=shutil.ignore_patterns("*.safetensors")
    )
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for m in messages %}<{{ m.role }}> {{ m.content }} {% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    spec = make_spec(model={"path": str(model)})
    messages = [{"role": "user", "content": "hello"}]
    assert chat_template.render(spec, "tiny-llama", messages) == "<user> hello <assistant>"
    plain = make_spec(model={"path": str(ROOT / "models" / "trained" / "kv-small")})
    assert chat_template.render(plain, "tiny-llama", messages) == "User: hello\nAssistant:"


def error_of(info) -> dict:
    return info.value.body.get("error", info.value.body)


async def test_typed_errors_become_openai_errors():
    async with http_stack() as s:
        with pytest.raises(openai.NotFoundError) as missing:
            await s.client.completions.create(model="nope", prompt="a")
        with pytest.raises(openai.BadRequestError) as too_long:
            await s.client.completions.create(model="tiny-llama", prompt="a", max_tokens=10**6)
        with pytest.raises(openai.BadRequestError) as batch:
            await s.client.completions.create(model="tiny-llama", prompt=["a", "b"])
        with pytest.raises(openai.BadRequestError) as unsupported:
            await s.client.completions.create(model="tiny-llama", prompt="a", logprobs=2)
    assert missing.value.status_code == 404
    assert error_of(missing) == {
        "message": "model 'nope' is not served; served models: tiny-llama",
        "type": "not_found_error",
        "param": None,
        "code": "not_found",
    }
    assert error_of(too_long)["message"] == "max_tokens is 1000000; the limit is 4096"
    assert error_of(batch)["param"] == "prompt" and "batches are not supported" in error_of(batch)["message"]
    assert error_of(unsupported)["param"] == "logprobs" and error_of(unsupported)["type"] == "invalid_request_error"


async def test_unready_model_is_503_and_unknown_route_is_404():
    async with http_stack(ready=False) as s:
        with pytest.raises(openai.InternalServerError) as info:
            await s.client.completions.create(model="tiny-llama", prompt="a")
        async with httpx.AsyncClient() as http:
            route = await http.get(s.base_url + "/nothing")
    assert info.value.status_code == 503 and error_of(info)["code"] == "unavailable"
    assert route.status_code == 404 and route.json()["error"]["type"] == "not_found_error"


async def test_in_flight_limit_is_429():
    async with http_stack(step_s=0.05, limits={"max_concurrent_requests": 1}) as s:
        slow = asyncio.create_task(s.client.completions.create(model="tiny-llama", prompt="a", max_tokens=20))
        await eventually_async(lambda: s.router.pipeline.in_flight, message="the slow request in flight")
        with pytest.raises(openai.RateLimitError) as info:
            await s.client.completions.create(model="tiny-llama", prompt="a")
        await slow
    assert info.value.status_code == 429 and "max_concurrent_requests is 1" in error_of(info)["message"]


async def test_deadline_is_504_and_mid_stream_errors_end_the_stream():
    async with http_stack(step_s=0.05, limits={"default_deadline_s": 0.3}) as s:
        with pytest.raises(openai.APIStatusError) as info:
            await s.client.completions.create(model="tiny-llama", prompt="a", max_tokens=100)
        stream = await s.client.completions.create(model="tiny-llama", prompt="a", max_tokens=100, stream=True)
        received = []
        with pytest.raises(openai.APIError) as mid:
            async for chunk in stream:
                received.append(chunk)
    assert info.value.status_code == 504 and error_of(info)["type"] == "timeout_error"
    assert received and "deadline" in mid.value.message


async def test_stop_drains_in_flight_requests_then_refuses_new_ones():
    async with http_stack(step_s=0.02) as s:
        slow = asyncio.create_task(s.client.completions.create(model="tiny-llama", prompt="a", max_tokens=20))
        await eventually_async(lambda: s.router.pipeline.in_flight, message="the slow request in flight")
        await s.router.stop(5)
        reply = await slow
        with pytest.raises(openai.APIConnectionError):
            await s.client.models.list()
    assert reply.usage.completion_tokens == 20


async def test_disconnected_stream_aborts_the_engine_request():
    async with http_stack(step_s=0.05) as s:
        stream = await s.client.completions.create(
            model="tiny-llama", prompt="a", max_tokens=1000, stream=True, extra_headers={"x-request-id": "gone"}
        )
        async for _ in stream:
            break
        await stream.close()
        await eventually_async(
            lambda: "gone" in s.engine.aborted, message="the disconnected stream's engine request aborted"
        )
    assert not s.engine.unfinished


def auth_spec(tmp_path, **auth):
    tokens = tmp_path / "tokens.env"
    tokens.write_text(f"acme={TOKEN}\ntiny={'t' * 20}\n")
    return {
        "router": {"auth": {"tokens_file": str(tokens), **auth}},
        "policies": {"tenants": [{"name": "acme", "budget": 1.0}, {"name": "tiny", "budget": 1.0}]},
    }


async def test_auth_applies_and_the_token_decides_the_tenant(tmp_path):
    async with http_stack(token=TOKEN, **auth_spec(tmp_path)) as s:
        reply = await s.client.completions.create(
            model="tiny-llama", prompt="a", max_tokens=2, extra_headers={"x-shardline-tenant": "tiny"}
        )
        anonymous = openai.AsyncOpenAI(base_url=s.base_url, api_key="wrong-token", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            await anonymous.models.list()
        await anonymous.close()
    assert reply.model_extra["shardline"]["report"]["decoding"]["tenant"] == "acme"
    assert info.value.status_code == 401 and error_of(info)["type"] == "authentication_error"
    assert "authorization: Bearer <token>" in error_of(info)["message"]


async def test_grpc_and_http_share_the_rate_limit_bucket(tmp_path):
    async with http_stack(token=TOKEN, **auth_spec(tmp_path, requests_per_s=0.01, burst=1)) as s:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{s.router.port}") as channel:
            await pb_grpc.InferenceStub(channel).Generate(
                make_request(max_tokens=1), metadata=(("authorization", f"Bearer {TOKEN}"),)
            )
        with pytest.raises(openai.RateLimitError) as info:
            await s.client.models.list()
    assert "tenant 'acme' is over its rate limit" in error_of(info)["message"]


async def test_sync_client_works_from_a_thread():
    async with http_stack() as s:
        client = openai.OpenAI(base_url=s.base_url, api_key="unused", max_retries=0)
        reply = await asyncio.to_thread(client.completions.create, model="tiny-llama", prompt="q r", max_tokens=2)
        client.close()
    assert reply.choices[0].text == " q r"


async def test_https_with_mutual_tls_uses_the_grpc_certificates(tmp_path):
    pki = make_pki(tmp_path)
    tls = {"cert_file": str(pki["server"]), "key_file": str(pki["server_key"]), "client_ca_file": str(pki["ca"])}
    async with http_stack(router={"tls": tls}) as s:
        url = s.base_url.replace("http://", "https://")
        anonymous = ssl.create_default_context(cafile=str(pki["ca"]))
        mutual = ssl.create_default_context(cafile=str(pki["ca"]))
        mutual.load_cert_chain(str(pki["client"]), str(pki["client_key"]))
        async with httpx.AsyncClient(verify=mutual) as http:
            client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, http_client=http)
            reply = await client.completions.create(model="tiny-llama", prompt="hi", max_tokens=2)
        async with httpx.AsyncClient(verify=anonymous) as http:
            client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, http_client=http)
            with pytest.raises(openai.APIConnectionError):
                await client.models.list()
    assert reply.usage.completion_tokens == 2
