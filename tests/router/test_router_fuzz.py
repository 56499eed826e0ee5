"""Property-based fuzzing of every Generate field, the wire bytes and the metadata,
on the real grpc.aio router (auth on) over a fake engine.

Whatever the values (tests/fuzzing.py draws them), the router answers OK or a
typed status with a message: never UNKNOWN or INTERNAL, never a hang, and it
keeps serving. Bounded here; bench/fuzz.py runs the same strategies long.
"""

import math

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from fuzzing import MODEL, TOKEN, TYPED, Case, cases, fuzz_spec, send, threaded_router, write_tokens
from shardline.v1 import inference_pb2 as pb

EXAMPLES = 100


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    spec = fuzz_spec(write_tokens(tmp_path_factory.mktemp("fuzz") / "tokens.env"))
    with threaded_router(spec) as target, grpc.insecure_channel(target) as channel:
        yield channel


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases)
def test_any_call_gets_ok_or_a_typed_status_with_a_message(channel, case):
    code, details = send(channel, case)
    assert code in TYPED, (code, details, case)
    assert code == grpc.StatusCode.OK or details, case
    request = case.body
    if code == grpc.StatusCode.INVALID_ARGUMENT and "temperature" in details and not isinstance(request, bytes):
        assert not (math.isfinite(request.sampling.temperature) and 0 <= request.sampling.temperature <= 2)


def test_the_router_still_serves_after_the_fuzzing(channel):
    ok = Case(pb.GenerateRequest(model=MODEL, prompt="a b c"), (("authorization", f"Bearer {TOKEN}"),))
    assert send(channel, ok) == (grpc.StatusCode.OK, "")
