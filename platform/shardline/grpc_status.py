"""Maps exceptions to gRPC statuses: typed errors keep their code and message.

A leaf beside the error tree (`errors.py`): both front doors and telemetry ask it.
"""

from __future__ import annotations

import logging

import grpc

from shardline.errors import RequestError, root_cause

logger = logging.getLogger(__name__)


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    cause = root_cause(exc)
    if isinstance(cause, RequestError):
        return grpc.StatusCode[cause.grpc_code], cause.message
    logger.exception("unexpected error while serving a request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(cause).__name__}: {cause}"


def status_code(exc: BaseException) -> grpc.StatusCode:
    """The code `to_status` gives `exc`, without logging it (telemetry asks too)."""
    cause = root_cause(exc)
    return grpc.StatusCode[cause.grpc_code] if isinstance(cause, RequestError) else grpc.StatusCode.INTERNAL


def retry_after_s(exc: BaseException) -> float | None:
    """The retry advice a typed error carries (RESOURCE_EXHAUSTED from overload), if any."""
    return getattr(root_cause(exc), "retry_after_s", None)
