"""Fuzzing strategies: deployment specs, and the router's gRPC door (one call, a router to call).

`mutated_specs`: valid specs with values at any depth replaced by arbitrary ones
(tests/unit/test_spec.py; tests/integration/test_deploy_failures.py).

The router's door: shared by tests/router/test_router_fuzz.py (a bounded run in
`make test`) and bench/fuzz.py (the long run). A case is a Generate call: a
request drawn field by field (NaN/inf, negatives, huge numbers, odd, empty,
duplicate or huge strings, huge stop lists, prompts over the prompt and message
limits), or a valid request's bytes mutated on the wire; plus metadata (binary
values that are not UTF-8, values over the metadata limit, good, bad and missing
tokens). Every answer must be OK or a typed status with a message: never UNKNOWN
or INTERNAL, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import string
import threading
from dataclasses import dataclass, field

import grpc
from hypothesis import strategies as st

from builders import make_spec, spec_dict
from fakes import start_fake_stack
from shardline.router.grpc import transport
from shardline.spec.deployment import DeploymentSpec
from shardline.v1 import inference_pb2 as pb

MODEL = "tiny-llama"
TOKEN = "fuzz-token-0123456789"
TYPED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}
# Small limits, so oversized inputs are cheap to make and send, and fake generations short.
LIMITS = {"max_prompt_bytes": 8192, "max_metadata_bytes": 4096, "max_tokens": 64, "default_max_tokens": 8}
MESSAGE_LIMIT = transport.max_receive_bytes(make_spec(limits=LIMITS).router.limits)
CALL_TIMEOUT_S = 10
U32, U64 = 2**32 - 1, 2**64 - 1

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, -1.0, 1e30]))
text = st.text(max_size=40)

spec_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def mutated_specs(draw) -> dict:
    """A valid spec with a few values (at any depth) replaced by arbitrary ones."""
    data = spec_dict(policies={"tenants": [{"name": "t", "budget": 1.0}]})
    for _ in range(draw(st.integers(1, 4))):
        node = data
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            key = draw(st.sampled_from(keys + ["__new__"]))
            child = node.get(key) if isinstance(node, dict) else node[key] if key != "__new__" else None
            if isinstance(child, (dict, list)) and child and draw(st.booleans()):
                node = child
                continue
            if isinstance(node, dict):
                node[key if key != "__new__" else draw(st.text(max_size=8))] = draw(spec_values)
            elif key != "__new__":
                node[key] = draw(spec_values)
            break
    return data


def sized(low: int, high: int, units=("x", "é", "a b ", "\x00", "🦓")) -> st.SearchStrategy[str]:
    """A string of `low`..`high` characters, cheap even when huge (one repeated unit)."""
    return st.tuples(st.integers(low, high), st.sampled_from(units)).map(
        lambda n_unit: (n_unit[1] * n_unit[0])[: n_unit[0]]
    )


def rare(common: st.SearchStrategy, uncommon: st.SearchStrategy, odds: int = 9) -> st.SearchStrategy:
    """`uncommon` about once in `odds + 1` draws (the huge inputs are slow to send).
    (`st.one_of` would not do: it draws its branches evenly, however often one repeats.)"""
    return st.integers(0, odds).flatmap(lambda i: common if i else uncommon)


words = st.lists(st.sampled_from(["a", "b", "code", "zebra", "is", "7"]), min_size=1, max_size=30).map(" ".join)
stop = st.one_of(st.just(""), st.just("x"), text, st.text(min_size=200, max_size=300), sized(1000, 5000))
compression_policies = st.one_of(st.sampled_from(["none", "truncate_middle", "extractive"]), text)
# Per field: (a value admission accepts, any value). A request takes its fields from
# the first column except for up to two (or, one time in four, all): so both the
# rejections and the paths behind admission get exercised.
FIELDS = {
    "model": (st.just(MODEL), st.one_of(text, sized(100, 10_000))),
    "prompt": (
        words,
        rare(
            st.one_of(text, st.just(""), st.just(" \n"), st.text(min_size=2000, max_size=4000)),
            st.one_of(
                sized(LIMITS["max_prompt_bytes"] - 4, LIMITS["max_prompt_bytes"] + 4),
                sized(MESSAGE_LIMIT, MESSAGE_LIMIT + 100, units=("x",)),
            ),
        ),
    ),
    "request_id": (
        st.one_of(st.just(""), st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True)),
        st.one_of(text, sized(100, 1000)),
    ),
    "tenant": (st.sampled_from(["", "fuzz"]), st.one_of(text, sized(100, 10_000))),
    "max_tokens": (
        st.integers(1, LIMITS["max_tokens"]),
        st.one_of(st.integers(0, U32), st.integers(0, LIMITS["max_tokens"] + 1)),
    ),
    "temperature": (st.floats(0, 2), floats),
    "top_p": (st.floats(0.01, 1), floats),
    "top_k": (st.integers(0, 100), st.integers(0, U32)),
    "seed": (st.integers(0, U64), st.integers(0, U64)),
    "stop": (
        st.lists(st.text(min_size=1, max_size=10), max_size=4),
        st.one_of(st.lists(stop, max_size=12), st.lists(st.sampled_from(["x", "y", "z"]), min_size=50, max_size=500)),
    ),
    "compression": (st.sampled_from([None, "none", "truncate_middle"]), compression_policies),
}
SAMPLING = ("max_tokens", "temperature", "top_p", "top_k", "seed")


@st.composite
def requests(draw) -> pb.GenerateRequest:
    chaos = draw(st.integers(0, 3)) == 0
    wild = set(FIELDS) if chaos else set(draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=2)))
    value = {name: draw(pair[name in wild]) for name, pair in FIELDS.items()}
    sampling = pb.SamplingParams(stop=value["stop"], ignore_eos=draw(st.booleans()))
    for name in SAMPLING:
        if name in wild or draw(st.booleans()):
            setattr(sampling, name, value[name])
    request = pb.GenerateRequest(
        model=value["model"],
        prompt=value["prompt"],
        sampling=sampling,
        request_id=value["request_id"],
        tenant=value["tenant"],
        uncertainty=draw(st.booleans()),
    )
    if value["compression"] is not None:
        request.compression.policy = value["compression"]
        if "compression" in wild:
            if draw(st.booleans()):
                request.compression.target_ratio = draw(floats)
            request.compression.system_chars = draw(st.integers(0, U32))
            for _ in range(draw(st.integers(0, 3))):
                request.compression.protected.add(start=draw(st.integers(0, U32)), end=draw(st.integers(0, U32)))
        else:
            request.compression.target_ratio = draw(st.floats(1, 8))
    return request


@st.composite
def mutated(draw) -> bytes:
    """A valid request's wire bytes with a few bytes flipped, cut or inserted."""
    data = bytearray(
        pb.GenerateRequest(
            model=MODEL, prompt=draw(text) or "hi", request_id=draw(text), sampling=pb.SamplingParams(max_tokens=4)
        ).SerializeToString()
    )
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


ascii_value = st.text(alphabet=string.printable[:95], max_size=60)  # what a client may send in a text header
metadata_entry = rare(
    st.one_of(
        st.tuples(st.sampled_from(["x-shardline-tenant", "traceparent", "tracestate", "x-request-id"]), ascii_value),
        # Binary (-bin) values are the one place a client sends raw bytes: not UTF-8 at all.
        st.tuples(
            st.sampled_from(["x-shardline-tenant-bin", "authorization-bin", "traceparent-bin", "x-fuzz-bin"]),
            st.binary(max_size=64),
        ),
        st.tuples(st.from_regex(r"x-[a-z0-9]{1,8}", fullmatch=True), ascii_value),
    ),
    st.tuples(
        st.sampled_from(["x-shardline-tenant", "authorization", "traceparent"]),
        sized(LIMITS["max_metadata_bytes"] - 200, 2 * LIMITS["max_metadata_bytes"], units=("v", "a b", "Bearer ")),
    ),
    odds=6,
)


@st.composite
def metadata(draw) -> tuple[tuple[str, str | bytes], ...]:
    token = draw(st.sampled_from([f"Bearer {TOKEN}"] * 20 + ["", "Bearer ", f"Bearer {TOKEN}x", "Basic abc"]))
    entries = draw(st.lists(metadata_entry, max_size=3))
    return ((("authorization", token),) if token else ()) + tuple(entries)


@dataclass
class Case:
    """One Generate call: a request (or raw wire bytes), its metadata, unary or streaming."""

    body: pb.GenerateRequest | bytes
    metadata: tuple = field(default_factory=tuple)
    streaming: bool = False


cases = st.builds(Case, body=rare(requests(), mutated(), odds=3), metadata=metadata(), streaming=st.booleans())


def send(channel: grpc.Channel, case: Case) -> tuple[grpc.StatusCode, str]:
    """Make the call; (status, details). Raises AssertionError on an incomplete OK."""
    method = "GenerateStream" if case.streaming else "Generate"
    factory = channel.unary_stream if case.streaming else channel.unary_unary
    call = factory(
        f"/shardline.v1.Inference/{method}",
        response_deserializer=(pb.GenerateChunk if case.streaming else pb.GenerateResponse).FromString,
    )
    payload = case.body if isinstance(case.body, bytes) else case.body.SerializeToString()
    try:
        if case.streaming:
            chunks = list(call(payload, metadata=case.metadata, timeout=CALL_TIMEOUT_S))
            assert chunks and chunks[-1].finish_reason, "stream ended without a finish reason"
        else:
            assert call(payload, metadata=case.metadata, timeout=CALL_TIMEOUT_S).finish_reason, "no finish reason"
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def fuzz_spec(tokens_file: str) -> DeploymentSpec:
    return make_spec(
        router={"port": 0, "auth": {"tokens_file": tokens_file}, "limits": LIMITS},
        policies={"tenants": [{"name": "fuzz", "budget": 1e9}]},
    )


@contextlib.contextmanager
def threaded_router(spec: DeploymentSpec):
    """The real grpc.aio router over a fake engine, on its own event loop in a thread,
    so a plain blocking client can drive it. Yields the target address."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder = {}

    async def start():
        holder["stack"] = await start_fake_stack(spec)
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(30), "the router did not start"
    try:
        yield holder["stack"].target
    finally:
        asyncio.run_coroutine_threadsafe(holder["stack"].close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def write_tokens(path) -> str:
    path.write_text(f"fuzz={TOKEN}\n")
    return str(path)
