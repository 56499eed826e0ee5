"""Router and replica telemetry over a real grpc.aio server and fake engines.

Spans are read from an in-memory exporter installed as this process's provider;
metrics from the process's Prometheus registry.
"""

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from builders import make_request
from fakes import fake_stack
from shardline.telemetry import attributes as attr
from shardline.wire import TRACE_ID

SERVER_SPAN = attr.SERVER_SPAN_PREFIX + "GenerateStream"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def of_trace(exporter, trace_id: str) -> dict:
    return {s.name: s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id}


async def stream(stack, request, metadata=()):
    call = stack.stub.GenerateStream(request, metadata=metadata)
    chunks = [c async for c in call]
    return dict(await call.initial_metadata())[TRACE_ID], chunks


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_server_span_follows_grpc_conventions_and_its_id_reaches_the_client(spans):
    async with fake_stack(refresh=False) as stack:
        tid, chunks = await stream(stack, make_request(prompt="a b c", max_tokens=4))
    s = of_trace(spans, tid)
    server = s[SERVER_SPAN]
    assert server.kind == trace.SpanKind.SERVER and server.parent is None
    a = server.attributes
    assert (a[attr.RPC_SYSTEM], a[attr.RPC_SERVICE], a[attr.RPC_METHOD], a[attr.RPC_GRPC_STATUS_CODE]) == (
        "grpc",
        "shardline.v1.Inference",
        "GenerateStream",
        0,
    )
    assert a[attr.GEN_AI_REQUEST_MODEL] == "tiny-llama" and a[attr.GEN_AI_REQUEST_MAX_TOKENS] == 4
    assert (a[attr.GEN_AI_USAGE_INPUT_TOKENS], a[attr.GEN_AI_USAGE_OUTPUT_TOKENS]) == (3, 4)
    assert tuple(a[attr.GEN_AI_RESPONSE_FINISH_REASONS]) == ("length",)
    assert attr.GEN_AI_PROMPT not in a and attr.GEN_AI_COMPLETION not in a


async def test_stages_and_the_replica_span_nest_under_the_server_span(spans):
    async with fake_stack(refresh=False) as stack:
        tid, _ = await stream(stack, make_request(prompt="x y", max_tokens=2))
    s = of_trace(spans, tid)
    server, call, replica = (s[n] for n in (SERVER_SPAN, attr.REPLICA_CALL_SPAN, attr.REPLICA_SPAN))
    stages = (attr.ADMISSION_SPAN, attr.COMPRESSION_SPAN, attr.DECODING_PLAN_SPAN, attr.CASCADE_ATTEMPT_SPAN)
    assert {s[n].parent.span_id for n in stages} == {server.context.span_id}
    assert call.parent.span_id == s[attr.CASCADE_ATTEMPT_SPAN].context.span_id
    assert call.kind == trace.SpanKind.CLIENT
    assert replica.parent.span_id == call.context.span_id
    assert replica.attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 2


async def test_an_incoming_traceparent_is_continued_not_replaced(spans):
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    async with fake_stack(refresh=False) as stack:
        tid, _ = await stream(stack, make_request(max_tokens=1), metadata=(("traceparent", traceparent),))
    assert tid == CLIENT_TRACE
    server = of_trace(spans, tid)[SERVER_SPAN]
    assert format(server.parent.span_id, "016x") == CLIENT_SPAN


async def test_a_rejected_request_is_an_error_span_and_counted_by_code(spans):
    before = sample("shardline_requests_total", method="GenerateStream", code="INVALID_ARGUMENT")
    async with fake_stack(refresh=False) as stack:
        call = stack.stub.GenerateStream(make_request(max_tokens=0))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            [c async for c in call]
        tid = dict(await call.initial_metadata())[TRACE_ID]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    s = of_trace(spans, tid)
    assert s[SERVER_SPAN].attributes[attr.RPC_GRPC_STATUS_CODE] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert s[SERVER_SPAN].status.status_code == trace.StatusCode.ERROR
    assert s[attr.ADMISSION_SPAN].status.status_code == trace.StatusCode.ERROR
    assert sample("shardline_requests_total", method="GenerateStream", code="INVALID_ARGUMENT") == before + 1


async def test_prompt_and_completion_are_recorded_only_when_the_spec_opts_in(spans):
    async with fake_stack(refresh=False, telemetry={"record_content": True}) as stack:
        tid, chunks = await stream(stack, make_request(prompt="p q", max_tokens=2))
    a = of_trace(spans, tid)[SERVER_SPAN].attributes
    assert a[attr.GEN_AI_PROMPT] == "p q"
    assert a[attr.GEN_AI_COMPLETION] == "".join(c.text for c in chunks) == " p q"


async def test_token_metrics_and_latency_histograms_count_each_request(spans):
    labels = {"model": "tiny-llama"}
    before = {
        n: sample(n, **labels)
        for n in (
            "shardline_output_tokens_total",
            "shardline_input_tokens_total",
            "shardline_time_to_first_token_seconds_count",
            "shardline_inter_token_seconds_count",
        )
    }
    async with fake_stack(refresh=False) as stack:
        await stream(stack, make_request(prompt="a b c", max_tokens=5))
    assert sample("shardline_output_tokens_total", **labels) == before["shardline_output_tokens_total"] + 5
    assert sample("shardline_input_tokens_total", **labels) == before["shardline_input_tokens_total"] + 3
    assert (
        sample("shardline_time_to_first_token_seconds_count", **labels)
        == before["shardline_time_to_first_token_seconds_count"] + 1
    )
    assert sample("shardline_inter_token_seconds_count", **labels) > before["shardline_inter_token_seconds_count"]


async def test_replica_gauges_count_ongoing_and_queued_requests_and_return_to_zero(spans):
    async with fake_stack(refresh=False, step_s=0.05) as stack:
        server = stack.backend.servers["tiny-llama"]
        labels = {"model": "tiny-llama", "replica": server._replica}
        call = stack.stub.GenerateStream(make_request(max_tokens=20))
        first = await call.read()
        assert first.token_ids
        assert sample("shardline_replica_ongoing_requests", **labels) == 1
        assert sample("shardline_replica_queue_depth", **labels) == 0  # it has its first token
        while (await call.read()) is not grpc.aio.EOF:
            pass
    assert sample("shardline_replica_ongoing_requests", **labels) == 0


async def test_the_http_door_continues_a_traceparent_and_traces_the_pipeline(spans):
    import aiohttp

    async with fake_stack(router={"port": 0, "http_port": 0}) as stack:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{stack.router.http_port}/v1/completions"
            headers = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
            async with session.post(
                url, json={"model": "tiny-llama", "prompt": "x y", "max_tokens": 2}, headers=headers
            ) as reply:
                assert reply.status == 200 and reply.headers["shardline-trace-id"] == CLIENT_TRACE
    s = of_trace(spans, CLIENT_TRACE)
    server = s["POST /v1/completions"]
    assert format(server.parent.span_id, "016x") == CLIENT_SPAN
    assert server.attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    assert (server.attributes[attr.TIER], server.attributes[attr.COST]) == ("tiny-llama", 0.0)
    assert s[attr.CASCADE_ATTEMPT_SPAN].parent.span_id == server.context.span_id
    assert s[attr.REPLICA_SPAN].parent.span_id == s[attr.REPLICA_CALL_SPAN].context.span_id
