"""Python client for a Shardline router.

    from shardline.client import Client
    with Client("localhost:50051") as client:
        for chunk in client.stream("tiny-llama", "Hello", max_tokens=16, temperature=0):
            print(chunk.text, end="", flush=True)

`AsyncClient` offers the same calls on grpc.aio for concurrent use.
Errors arrive as `grpc.RpcError` with the router's typed status and message.
Calls the router refuses with UNAVAILABLE (draining during a rolling update or
`shardline down`, no ready replica) are retried by gRPC itself with backoff
(`RetryPolicy`; `retry=None` turns that off): UNAVAILABLE comes before any token,
so nothing is repeated. `channel_options(RetryPolicy())` gives the same to a
channel of your own.
When the caller has a current OpenTelemetry span, its W3C context is sent along
(the router continues that trace); `trace_id(call)` reads the trace id the
router answers with.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import propagate

from shardline import wire
from shardline.v1 import inference_pb2 as pb
from shardline.v1 import inference_pb2_grpc as pb_grpc

MAX_GRPC_ATTEMPTS = 5
"""gRPC caps a retry policy's maxAttempts at 5."""


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC's retries (the channel's service config) of Inference calls that end
    UNAVAILABLE before any response: attempt n waits a random time up to
    `initial_backoff_s * multiplier**(n-1)` (at most `max_backoff_s`). The defaults
    ride out a router switch of up to ~4 s. RESOURCE_EXHAUSTED is not retried:
    repeating calls into an overload makes it worse."""

    attempts: int = 5
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not 2 <= self.attempts <= MAX_GRPC_ATTEMPTS:
            raise ValueError(f"attempts is {self.attempts}; gRPC allows 2 to {MAX_GRPC_ATTEMPTS}")
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError(
                f"initial_backoff_s ({self.initial_backoff_s}) must be > 0 and at most "
                f"max_backoff_s ({self.max_backoff_s})"
            )
        if self.multiplier < 1:
            raise ValueError(f"multiplier is {self.multiplier}; it must be at least 1")

    def service_config(self) -> str:
        policy = {
            "maxAttempts": self.attempts,
            "initialBackoff": f"{self.initial_backoff_s}s",
            "maxBackoff": f"{self.max_backoff_s}s",
            "backoffMultiplier": self.multiplier,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
        # Throttling stops retries when most calls fail (the router is really down),
        # so a dead router does not get every call several times over.
        return json.dumps(
            {
                "methodConfig": [{"name": [{"service": wire.INFERENCE_SERVICE}], "retryPolicy": policy}],
                "retryThrottling": {"maxTokens": 100, "tokenRatio": 0.1},
            }
        )


def channel_options(retry: RetryPolicy | None = RetryPolicy()) -> list[tuple[str, object]]:
    """grpc channel options for a Shardline router: the retry policy, when given."""
    if retry is None:
        return []
    return [("grpc.enable_retries", 1), ("grpc.service_config", retry.service_config())]


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
    return pb.GenerateRequest(
        model=model,
        prompt=prompt,
        sampling=sampling,
        request_id=request_id,
        tenant=tenant,
        uncertainty=uncertainty,
        compression=compression,
    )


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Per-call metadata: the bearer token (when given) and the current trace context,
    so a client span (if any) becomes the parent of the router's."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    auth = (wire.bearer(token),) if token else ()
    return auth + tuple(headers.items())


def trace_id(call) -> str:
    """The trace id the router returned for `call` (a stream or a `with_call` result)."""
    return dict(call.initial_metadata() or ()).get(wire.TRACE_ID, "")


class Client:
    """`token`: the tenant's bearer token, when the router requires auth.
    `credentials`: `grpc.ssl_channel_credentials(...)` for a TLS / mutual-TLS router.
    `retry`: how UNAVAILABLE calls are retried; None: not at all."""

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        retry: RetryPolicy | None = RetryPolicy(),
    ):
        options = channel_options(retry)
        self._channel = (
            grpc.secure_channel(target, credentials, options) if credentials else grpc.insecure_channel(target, options)
        )
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
        """ "SERVING" or "NOT_SERVING" for `service` ("" = the whole router)."""
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
        retry: RetryPolicy | None = RetryPolicy(),
    ):
        aio, options = grpc.aio, channel_options(retry)
        self._channel = (
            aio.secure_channel(target, credentials, options) if credentials else aio.insecure_channel(target, options)
        )
        self._token = token
        self._stub = pb_grpc.InferenceStub(self._channel)

    async def generate(self, model: str, prompt: str, timeout: float | None = None, **sampling) -> pb.GenerateResponse:
        request = make_request(model, prompt, **sampling)
        return await self._stub.Generate(request, timeout=timeout, metadata=call_metadata(self._token))

    def stream(
        self, model: str, prompt: str, timeout: float | None = None, **sampling
    ) -> AsyncIterator[pb.GenerateChunk]:
        request = make_request(model, prompt, **sampling)
        return self._stub.GenerateStream(request, timeout=timeout, metadata=call_metadata(self._token))

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
