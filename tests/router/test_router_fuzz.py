"""Property-based fuzzing of every Generate field on the real grpc.aio router.

Whatever the values (NaN, infinities, negatives, huge numbers, odd or empty
strings, duplicate stop strings, bad compression options), the router answers
OK or a typed status with a message: never UNKNOWN or INTERNAL, never a hang.
The router runs on its own event loop in a thread, so hypothesis drives it with
a plain blocking client. Bounded here (`max_examples`); raise it to fuzz longer.
"""

import asyncio
import math
import threading

import grpc
import pytest
from builders import make_spec
from fakes import FakeEngine, LocalBackend, start_llm_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardline.router.server import RouterServer
from shardline.v1 import inference_pb2 as pb
from shardline.v1 import inference_pb2_grpc as pb_grpc

TYPED = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.PERMISSION_DENIED,
}
U32, U64 = 2**32 - 1, 2**64 - 1
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, -1.0, 1e30]))
text = st.text(max_size=40)


@pytest.fixture(scope="module")
def router_target():
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder = {}

    async def start():
        spec = make_spec(router={"port": 0})
        engine = FakeEngine(spec.models[0])
        router = RouterServer(spec, LocalBackend({"tiny-llama": await start_llm_server(spec.models[0], engine)}))
        holder["port"] = await router.start()
        await router.refresh_health()
        holder["router"] = router
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(30)
    yield f"127.0.0.1:{holder['port']}"
    asyncio.run_coroutine_threadsafe(holder["router"].stop(0), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@st.composite
def requests(draw) -> pb.GenerateRequest:
    sampling = pb.SamplingParams(
        stop=draw(st.lists(st.one_of(st.just(""), st.just("x"), text, st.text(min_size=200, max_size=300)), max_size=12)),
        ignore_eos=draw(st.booleans()),
    )
    for name, strategy in (("max_tokens", st.integers(0, U32)), ("temperature", floats), ("top_p", floats),
                           ("top_k", st.integers(0, U32)), ("seed", st.integers(0, U64))):
        if draw(st.booleans()):
            setattr(sampling, name, draw(strategy))
    request = pb.GenerateRequest(
        model=draw(st.one_of(st.just("tiny-llama"), text)),
        prompt=draw(st.one_of(text, st.just(""), st.text(min_size=2000, max_size=4000))),
        sampling=sampling, request_id=draw(text), tenant=draw(st.one_of(st.just(""), text)),
        uncertainty=draw(st.booleans()),
    )
    if draw(st.booleans()):
        request.compression.policy = draw(st.one_of(st.sampled_from(["none", "truncate_middle", "extractive"]), text))
        if draw(st.booleans()):
            request.compression.target_ratio = draw(floats)
        request.compression.system_chars = draw(st.integers(0, U32))
        for _ in range(draw(st.integers(0, 3))):
            request.compression.protected.add(start=draw(st.integers(0, U32)), end=draw(st.integers(0, U32)))
    return request


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests(), streaming=st.booleans())
def test_any_request_gets_ok_or_a_typed_status_with_a_message(router_target, request, streaming):
    with grpc.insecure_channel(router_target) as channel:
        stub = pb_grpc.InferenceStub(channel)
        try:
            if streaming:
                chunks = list(stub.GenerateStream(request, timeout=10))
                assert chunks and chunks[-1].finish_reason
            else:
                reply = stub.Generate(request, timeout=10)
                assert reply.finish_reason
        except grpc.RpcError as exc:
            assert exc.code() in TYPED, (exc.code(), exc.details(), request)
            assert exc.details(), request
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "temperature" in exc.details():
                assert not (math.isfinite(request.sampling.temperature) and 0 <= request.sampling.temperature <= 2)
