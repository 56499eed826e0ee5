"""Python client for a Shardline router.

    from shardline.client import Client
    with Client("localhost:50051") as client:
        for chunk in client.stream("tiny-llama", "Hello", max_tokens=16, temperature=0):
            print(chunk.text, end="", flush=True)

`AsyncClient` offers the same calls on grpc.aio for concurrent use.
Errors arrive as `grpc.RpcError` with the router's typed status and message.
When the caller has a current OpenTelemetry span, its W3C context is sent along
(the router continues that trace); `trace_id(call)` reads the trace id the
router answers with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import propagate

from shardline.v1 import inference_pb2 as pb
from shardline.v1 import inference_pb2_grpc as pb_grpc


def make_request(
    model: str,
    prompt: str,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    stop: Sequence[str] = (),
    seed: int | None = None,
    ignore_eos: bool = False,
    request_id: str = "",
    tenant: str = "",
    uncertainty: bool = False,
    compression: pb.CompressionOptions | None = None,
) -> pb.GenerateRequest:
    sampling = pb.SamplingParams(stop=list(stop), ignore_eos=ignore_eos)
    for name, value in (
        ("max_tokens", max_tokens),
        ("temperature", temperature),
        ("top_p", top_p),
        ("top_k", top_k),
        ("seed", seed),
    ):
        if value is not None:
            setattr(sampling, name, value)
    return pb.GenerateRequest(model=model, prompt=prompt, sampling=sampling, request_id=request_id,
                              tenant=tenant, uncertainty=uncertainty, compression=compression)


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Per-call metadata: the bearer token (when given) and the current trace context,
    so a client span (if any) becomes the parent of the router's."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    auth = (("authorization", f"Bearer {token}"),) if token else ()
    return auth + tuple(headers.items())


TRACE_ID_METADATA = "shardline-trace-id"  # the router's answer; see shardline.telemetry


def trace_id(call) -> str:
    """The trace id the router returned for `call` (a stream or a `with_call` result)."""
    return dict(call.initial_metadata() or ()).get(TRACE_ID_METADATA, "")


class Client:
    """`token`: the tenant's bearer token, when the router requires auth.
    `credentials`: `grpc.ssl_channel_credentials(...)` for a TLS / mutual-TLS router."""

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ):
        self._channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
        self._token = token
        self._stub = pb_grpc.InferenceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def generate(self, model: str, prompt: str, timeout: float | None = None, **sampling) -> pb.GenerateResponse:
        request = make_request(model, prompt, **sampling)
        return self._stub.Generate(request, timeout=timeout, metadata=call_metadata(self._token))

    def stream(self, model: str, prompt: str, timeout: float | None = None, **sampling) -> Iterator[pb.GenerateChunk]:
        request = make_request(model, prompt, **sampling)
        return self._stub.GenerateStream(request, timeout=timeout, metadata=call_metadata(self._token))

    def list_models(self, timeout: float | None = 10.0) -> list[pb.ModelInfo]:
        reply = self._stub.ListModels(pb.ListModelsRequest(), timeout=timeout, metadata=call_metadata(self._token))
        return list(reply.models)

    def health(self, service: str = "", timeout: float | None = 5.0) -> str:
        """"SERVING" or "NOT_SERVING" for `service` ("" = the whole router)."""
        request = health_pb2.HealthCheckRequest(service=service)
        reply = self._health.Check(request, timeout=timeout, metadata=call_metadata(self._token))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient:
    """The same options as `Client`, on grpc.aio."""

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ):
        aio = grpc.aio
        self._channel = aio.secure_channel(target, credentials) if credentials else aio.insecure_channel(target)
        self._token = token
        self._stub = pb_grpc.InferenceStub(self._channel)

    async def generate(self, model: str, prompt: str, timeout: float | None = None, **sampling) -> pb.GenerateResponse:
        request = make_request(model, prompt, **sampling)
        return await self._stub.Generate(request, timeout=timeout, metadata=call_metadata(self._token))

    def stream(self, model: str, prompt: str, timeout: float | None = None, **sampling) -> AsyncIterator[pb.GenerateChunk]:
        request = make_request(model, prompt, **sampling)
        return self._stub.GenerateStream(request, timeout=timeout, metadata=call_metadata(self._token))

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
