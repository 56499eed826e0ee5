"""The router's grpc.aio interceptors: authentication first, then request decoding.

Interceptors return a wrapped handler (`with_prelude`) instead of answering
themselves, so each step runs in the RPC's own task, where the servicer runs: what
it sets (the tenant) is visible there, and `context.abort` in it is an ordinary
typed status.

- `AuthInterceptor`: the bearer token and the tenant's rate limit (`security.auth.Guard`),
  on every service but the exempt ones (health, reflection).
- `DecodeInterceptor`: requests that do not parse as their message get
  INVALID_ARGUMENT, not UNKNOWN. grpc.aio turns a deserializer's exception into
  UNKNOWN ("Unexpected DecodeError"); this has gRPC hand the raw bytes through and
  parses them in the call's own task, where a `DecodeError` (corrupt wire format, a
  string field that is not UTF-8) becomes a typed status naming the method. Calls
  with a streaming request (only reflection's) keep gRPC's own parsing.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from shardline.errors import RequestError
from shardline.security.auth import Guard

# (request, context) -> the request the method gets (aborts the call to refuse it)
Prelude = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def with_prelude(handler: grpc.RpcMethodHandler, prelude: Prelude, request_deserializer=None) -> grpc.RpcMethodHandler:
    """`handler` with `prelude` run first, for all four call shapes. For a streaming
    request the prelude gets the request iterator. `request_deserializer` replaces
    the handler's when given (`False`: pass the raw bytes through)."""
    kind = (
        ("stream" if handler.request_streaming else "unary")
        + "_"
        + ("stream" if handler.response_streaming else "unary")
    )
    behavior = getattr(handler, kind)

    # grpc.aio accepts streaming handlers written as async generators or as
    # coroutines that call context.write (health's Watch): keep the original shape.
    if inspect.isasyncgenfunction(behavior):

        async def wrapped(request, context):
            request = await prelude(request, context)
            async for item in behavior(request, context):
                yield item
    else:

        async def wrapped(request, context):
            request = await prelude(request, context)
            return await behavior(request, context)

    if request_deserializer is None:
        request_deserializer = handler.request_deserializer
    factory = getattr(grpc, f"{kind}_rpc_method_handler")
    return factory(
        wrapped, request_deserializer=request_deserializer or None, response_serializer=handler.response_serializer
    )


def interceptors(router, guard: Guard | None) -> list[grpc.aio.ServerInterceptor]:
    """Every interceptor of the router's server, in order: authentication (when the
    `RouterSpec` asks for it: `guard`), so an unauthenticated caller never costs a
    parse, then decoding."""
    auth = [AuthInterceptor(guard, exempt_services(router.auth.exempt))] if guard is not None else []
    return [*auth, DecodeInterceptor()]


def exempt_services(names) -> set[str]:
    full = {"health": health.SERVICE_NAME, "reflection": reflection.SERVICE_NAME}
    return {full[name] for name in names}


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, guard: Guard, exempt_services: set[str]):
        self._guard = guard
        self._exempt = exempt_services

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        service = details.method.split("/")[1] if details.method.count("/") == 2 else ""
        if handler is None or service in self._exempt:
            return handler
        return with_prelude(handler, self._admit)

    async def _admit(self, request, context: grpc.aio.ServicerContext):
        try:
            await self._guard.admit(context.invocation_metadata())
        except RequestError as exc:
            await context.abort(grpc.StatusCode[exc.grpc_code], exc.message)
        return request


class DecodeInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        parse, method = handler.request_deserializer, details.method

        async def decode(raw: bytes, context: grpc.aio.ServicerContext):
            try:
                return parse(raw)
            except DecodeError as exc:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{method}: the request ({len(raw)} bytes) does not parse: {exc}"
                )

        return with_prelude(handler, decode, request_deserializer=False)
