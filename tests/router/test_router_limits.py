"""Transport limits on the real router (gRPC and HTTP doors) over fake replicas.

What breaks a limit gets a pinned, typed status before any handler runs (gRPC
core answers RESOURCE_EXHAUSTED; aiohttp 413/400), never UNKNOWN or INTERNAL, and
the router keeps serving the next call on the same connection.
"""

import asyncio
import contextlib
import json
import time

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2

from builders import make_request, make_spec
from fakes import fake_stack
from fuzzing import threaded_router
from shardline.router.grpc import transport
from shardline.router.http.server import body_limit
from shardline.v1 import inference_pb2_grpc as pb_grpc
from waiting import eventually

MiB = 1024 * 1024


@contextlib.asynccontextmanager
async def router(step_s=0.0, **router_fields):
    async with fake_stack(step_s=step_s, router={"port": 0, "http_port": 0, **router_fields}) as s:
        yield s.router


async def code_of(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


async def still_serves(stub) -> None:
    reply = await stub.Generate(make_request(max_tokens=2), timeout=10)
    assert reply.usage.completion_tokens == 2


def test_receive_limit_is_twice_the_prompt_limit_within_bounds():
    limits = make_spec(limits={"max_prompt_bytes": 8 * MiB}).router.limits
    assert transport.max_receive_bytes(limits) == 16 * MiB
    assert transport.max_receive_bytes(make_spec(limits={"max_prompt_bytes": 10}).router.limits) == 4 * MiB
    assert transport.max_receive_bytes(make_spec(limits={"max_prompt_bytes": 64 * MiB}).router.limits) == 64 * MiB


async def test_message_over_the_receive_limit_is_resource_exhausted_and_the_connection_serves_on():
    async with router() as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.InferenceStub(channel)
        huge = make_request(prompt="x" * (4 * MiB + 1))
        code, details = await code_of(stub.Generate(huge, timeout=10))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"Received message larger than max ({huge.ByteSize()} vs. {4 * MiB})" in details
        code, _ = await code_of(stub.GenerateStream(huge, timeout=10).read())
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        await still_serves(stub)


async def test_prompt_under_the_message_limit_but_over_max_prompt_bytes_is_invalid_argument():
    async with router(limits={"max_prompt_bytes": 1000}) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            code, details = await code_of(pb_grpc.InferenceStub(channel).Generate(make_request(prompt="x" * 5000)))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "prompt is 5000 bytes; max_prompt_bytes is 1000")


@pytest.mark.parametrize(
    "metadata",
    [
        [("x-big", "v" * 5000)],  # one value over the limit
        [(f"x-h{i}", "v" * 100) for i in range(60)],  # many values that add up to it
        [("x-big-bin", bytes(range(256)) * 20)],  # binary (base64 on the wire)
    ],
    ids=["one-value", "many-values", "binary-value"],
)
async def test_metadata_over_the_limit_is_resource_exhausted_and_the_connection_serves_on(metadata):
    async with router(limits={"max_metadata_bytes": 4096}) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.InferenceStub(channel)
            code, details = await code_of(stub.Generate(make_request(), metadata=metadata, timeout=10))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "metadata size exceeds" in details and "4096" in details
            ok = await stub.Generate(make_request(max_tokens=1), metadata=[("x-fits", "v" * 3000)], timeout=10)
            assert ok.usage.completion_tokens == 1


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/shardline.v1.Inference/Generate", b"\x0a\x02\xff\xfe"),  # model: 2 bytes of invalid UTF-8
        ("/shardline.v1.Inference/GenerateStream", b"\xff\xff\xff\xff"),  # corrupt wire format
        ("/shardline.v1.Inference/ListModels", b"\x0a\x05ab"),  # truncated field
        ("/grpc.health.v1.Health/Check", b"\x0a\x01\xc3"),  # service: cut UTF-8 sequence
    ],
)
async def test_undecodable_request_is_invalid_argument_naming_the_method(path, raw):
    async with router() as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = (channel.unary_stream if path.endswith("Stream") else channel.unary_unary)(path)(raw, timeout=10)
        code, details = await code_of(call.read() if path.endswith("Stream") else call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith(f"{path}: the request ({len(raw)} bytes) does not parse: Error parsing message")
        await still_serves(pb_grpc.InferenceStub(channel))


async def test_undecodable_request_without_a_token_is_unauthenticated_first(tmp_path):
    tokens = tmp_path / "tokens.env"
    tokens.write_text(f"a={'a' * 20}\n")
    async with router(auth={"tokens_file": str(tokens)}) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            code, _ = await code_of(channel.unary_unary("/shardline.v1.Inference/Generate")(b"\xff\xff", timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_streams_over_the_per_connection_cap_are_refused_unavailable_and_never_run():
    async with router(step_s=0.02, limits={"max_streams_per_connection": 2}) as server:
        peak = 0

        async def watch():
            nonlocal peak
            while True:
                peak = max(peak, server.pipeline.in_flight)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.InferenceStub(channel)
            await still_serves(stub)  # the connection is up and has the router's SETTINGS
            results = await asyncio.gather(
                *(code_of(stub.Generate(make_request(max_tokens=10), timeout=20)) for _ in range(6))
            )
            await still_serves(stub)
        watcher.cancel()
    codes = [code for code, _ in results]
    assert peak <= 2 and codes.count(grpc.StatusCode.OK) >= 2
    # HTTP/2 REFUSED_STREAM (7): the call never reached a handler, so it is safe to retry.
    refused = [details for code, details in results if code != grpc.StatusCode.OK]
    assert all(d == "Stream removed (RST_STREAM (Received RST_STREAM with error code 7))" for d in refused), results


def test_server_options_name_every_limit():
    limits = make_spec(
        limits={"max_metadata_bytes": 5000, "max_streams_per_connection": 7, "default_deadline_s": 60}
    ).router.limits
    options = dict(transport.server_options(limits))
    assert options["grpc.max_metadata_size"] == options["grpc.absolute_max_metadata_size"] == 5000
    assert options["grpc.max_concurrent_streams"] == 7
    assert options["grpc.max_connection_age_grace_ms"] == 65_000  # outlasts every call's deadline
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == transport.MIN_CLIENT_PING_INTERVAL_MS


async def test_http_body_over_the_limit_is_413_with_an_openai_error_and_serves_on():
    async with router(limits={"max_prompt_bytes": 1000}) as server, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{server.http_port}/v1/completions"
        limit = body_limit(server._spec.router.limits)
        async with http.post(url, json={"model": "tiny-llama", "prompt": "x" * (limit + 1)}) as response:
            body = await response.json()
            assert response.status == 413
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "invalid_argument"
        assert body["error"]["message"] == (
            f"POST /v1/completions: the request body is over {limit} bytes "
            "(twice router.limits.max_prompt_bytes, plus 64 KiB)"
        )
        async with http.post(url, json={"model": "tiny-llama", "prompt": "a b", "max_tokens": 2}) as response:
            assert response.status == 200


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"x-big": "v" * 5000}, "Got more than 4096 bytes when reading"),
        ({f"x-h{i}": "v" for i in range(150)}, "Too many headers received"),
    ],
    ids=["huge-field", "too-many-fields"],
)
async def test_http_headers_over_the_limit_are_400_and_the_router_serves_on(headers, message):
    async with router(limits={"max_metadata_bytes": 4096}) as server, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{server.http_port}/v1/models"
        async with http.get(url, headers=headers) as response:
            assert response.status == 400
            assert message in await response.text()
        async with http.get(url, headers={"x-fits": "v" * 3000}) as response:
            assert response.status == 200


async def test_health_check_still_serves_after_every_kind_of_refusal():
    async with router(limits={"max_metadata_bytes": 4096}) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.InferenceStub(channel)
            await code_of(stub.Generate(make_request(prompt="x" * (5 * MiB)), timeout=10))
            await code_of(stub.Generate(make_request(), metadata=[("x-big", "v" * 9000)], timeout=10))
            await code_of(channel.unary_unary("/shardline.v1.Inference/Generate")(b"\xff", timeout=10))
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check", response_deserializer=health_pb2.HealthCheckResponse.FromString
            )
            reply = await check(health_pb2.HealthCheckRequest().SerializeToString(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def raw_http(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """One HTTP/1.1 exchange over a bare socket (clients refuse to send non-UTF-8 headers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize(
    ("header", "status", "message"),
    [
        (b"Authorization: Bearer \xff\xfe", 401, "missing or unknown bearer token"),
        (b"X-Request-Id: \xff", 400, "header x-request-id is not UTF-8 text"),
        (b"X-Shardline-Tenant: \xc3", 400, "header x-shardline-tenant is not UTF-8 text"),
    ],
    ids=["authorization", "request-id", "tenant"],
)
async def test_http_header_that_is_not_utf8_is_a_typed_error_not_a_500(tmp_path, header, status, message):
    tokens = tmp_path / "tokens.env"
    tokens.write_text(f"a={'a' * 20}\n")
    body = json.dumps({"model": "tiny-llama", "prompt": "a b", "max_tokens": 2}).encode()
    token = b"" if header.startswith(b"Authorization") else b"Authorization: Bearer " + b"a" * 20 + b"\r\n"
    async with router(auth={"tokens_file": str(tokens)}) as server:
        head = (
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + token + header + b"\r\n"
        )
        code, reply = await raw_http(server.http_port, head, body)
    assert code == status and message in reply["error"]["message"]


async def test_http_body_that_is_not_utf8_is_a_400():
    async with router() as server:
        head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        code, reply = await raw_http(server.http_port, head, b'{"model": "tiny-llama", "prompt": "\xff\xfe"}')
    assert code == 400 and reply["error"]["message"].startswith("request body is not valid JSON: 'utf-8' codec")


def test_a_client_pinging_too_often_is_sent_goaway_and_a_calm_one_is_not():
    """Keepalive enforcement: pings faster than MIN_CLIENT_PING_INTERVAL_MS earn
    GOAWAY (too_many_pings) after MAX_PING_STRIKES, which drops that client's
    connection (a call still open on it ends UNAVAILABLE "Too many pings"); a client
    that does not ping keeps its connection."""
    pushy = [
        ("grpc.keepalive_time_ms", 200),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_time_between_pings_ms", 200),
    ]
    ready = grpc.ChannelConnectivity.READY
    with threaded_router(make_spec(router={"port": 0})) as target:
        began = time.monotonic()
        with called_channel(target, pushy) as seen:
            eventually(lambda: seen[-1] != ready, message="the pushy client's connection dropped")
        dropped_after_s = time.monotonic() - began
        with called_channel(target, []) as seen:
            # Watched for twice as long as the pushy client took to be dropped (this run).
            time.sleep(2 * dropped_after_s)
            assert seen[-1] == ready, seen


@contextlib.contextmanager
def called_channel(target, options):
    """A channel that has made one call (which starts a client's keepalive pings) and
    connected; yields the connectivity states it went through ("goaway": the call
    ended "Too many pings")."""
    with grpc.insecure_channel(target, options=options) as channel:
        seen = []
        channel.subscribe(seen.append, try_to_connect=True)
        try:
            pb_grpc.InferenceStub(channel).Generate(make_request(max_tokens=1), timeout=10)
        except grpc.RpcError as exc:
            assert (exc.code(), exc.details()) == (grpc.StatusCode.UNAVAILABLE, "Too many pings")
            seen.append("goaway")
        eventually(lambda: grpc.ChannelConnectivity.READY in seen, message="the channel connected")
        yield seen
