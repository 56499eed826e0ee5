"""Maps exceptions to gRPC statuses: typed errors keep their code and message."""

from __future__ import annotations

import logging

import grpc

from shardline.errors import RequestError

logger = logging.getLogger(__name__)


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    cause = _unwrap(exc)
    if isinstance(cause, RequestError):
        return grpc.StatusCode[cause.grpc_code], cause.message
    logger.exception("unexpected error while serving a request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(cause).__name__}: {cause}"


def status_code(exc: BaseException) -> grpc.StatusCode:
    """The code `to_status` gives `exc`, without logging it (telemetry asks too)."""
    cause = _unwrap(exc)
    return grpc.StatusCode[cause.grpc_code] if isinstance(cause, RequestError) else grpc.StatusCode.INTERNAL


def _unwrap(exc: BaseException) -> BaseException:
    # Errors raised in a replica arrive wrapped by Ray (RayTaskError); its `cause`
    # is the exception the replica raised.
    seen = 0
    while hasattr(exc, "cause") and isinstance(exc.cause, BaseException) and seen < 8:
        exc, seen = exc.cause, seen + 1
    return exc
