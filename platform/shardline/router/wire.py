"""Requests that do not parse as their message get INVALID_ARGUMENT, not UNKNOWN.

grpc.aio turns a deserializer's exception into UNKNOWN ("Unexpected DecodeError").
This interceptor has gRPC hand the raw bytes through and parses them in the call's
own task, where a `DecodeError` (corrupt wire format, a string field that is not
UTF-8) becomes a typed status naming the method. Calls with a streaming request
(only reflection's) keep gRPC's own parsing.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError

from shardline.router.handlers import with_prelude


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
