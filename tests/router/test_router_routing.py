"""What the router hands Serve's request router: the session key from either door and
the prompt's blocks when the model routes by prompt (serve/replica_set.py reads them)."""

import grpc
import httpx
import pytest

from builders import make_request, make_spec
from fakes import FakeEngine, fake_stack
from shardline import wire
from shardline.policies.routing import blocks


class RecordingEngine(FakeEngine):
    def __init__(self, model):
        super().__init__(model)
        self.requests = []

    async def generate(self, request):
        self.requests.append(request)
        async for delta in super().generate(request):
            yield delta


def stack(policy: str, **router):
    spec = make_spec(model={"routing": {"policy": policy}}, router={"port": 0, **router})
    engine = RecordingEngine(spec.models[0])
    return fake_stack(spec, engines={spec.models[0].name: engine}), engine


async def test_the_session_key_and_prompt_blocks_reach_the_replica_call():
    prompt = "system prompt " * 100
    context, engine = stack("session", http_port=0)
    async with context as s:
        await s.stub.Generate(make_request(prompt=prompt, max_tokens=2), metadata=((wire.SESSION, "alice"),))
        url = f"http://127.0.0.1:{s.router.http_port}/v1/completions"
        body = {"model": "tiny-llama", "prompt": prompt, "max_tokens": 2}
        async with httpx.AsyncClient() as client:
            reply = await client.post(url, json=body, headers={wire.SESSION: "bob"})
        assert reply.status_code == 200
    grpc_call, http_call = engine.requests
    assert (grpc_call.session, http_call.session) == ("alice", "bob")
    # No tokenizer.json beside the fake model: character blocks of the engine's block size.
    assert grpc_call.prefix_blocks == blocks.chain_chars(prompt, 128) and len(grpc_call.prefix_blocks) == 2
    assert http_call.prefix_blocks == grpc_call.prefix_blocks


async def test_a_model_that_ignores_the_prompt_gets_no_blocks():
    context, engine = stack("least_loaded")
    async with context as s:
        await s.stub.Generate(make_request(prompt="word " * 400, max_tokens=1))
    assert engine.requests[0].prefix_blocks == ()


async def test_an_oversized_session_key_is_invalid():
    context, _ = stack("session")
    async with context as s:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.stub.Generate(make_request(max_tokens=1), metadata=((wire.SESSION, "k" * 300),))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "session key (x-shardline-session) is 300 bytes; the limit is 256"
