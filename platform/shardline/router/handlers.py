"""Wrapping grpc.aio method handlers: run a step before the method, in the RPC's own task.

Interceptors return a wrapped handler instead of answering themselves, so the
step runs where the servicer runs: what it sets (the tenant) is visible there,
and `context.abort` in it is an ordinary typed status.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

# (request, context) -> the request the method gets (aborts the call to refuse it)
Prelude = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def with_prelude(handler: grpc.RpcMethodHandler, prelude: Prelude, request_deserializer=None) -> grpc.RpcMethodHandler:
    """`handler` with `prelude` run first, for all four call shapes. For a streaming
    request the prelude gets the request iterator. `request_deserializer` replaces
    the handler's when given (`False`: pass the raw bytes through)."""
    kind = ("stream" if handler.request_streaming else "unary") + "_" + ("stream" if handler.response_streaming else "unary")
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
    return factory(wrapped, request_deserializer=request_deserializer or None,
                   response_serializer=handler.response_serializer)
