"""One error tree for Shardline.

`RequestError` subclasses carry the gRPC status they map to, so the router turns
any of them into a typed status without a lookup table. They pickle across Ray
(a single string argument), which pydantic's ValidationError does not.
"""

from __future__ import annotations


class ShardlineError(Exception):
    """Base of every error Shardline raises on purpose."""


class SpecError(ShardlineError):
    """A deployment spec is invalid. The message lists every problem, one per line."""


class RequestError(ShardlineError):
    """A request cannot be served. `grpc_code` names a `grpc.StatusCode` member."""

    grpc_code = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(RequestError):
    grpc_code = "INVALID_ARGUMENT"


class NotFound(RequestError):
    grpc_code = "NOT_FOUND"


class ResourceExhausted(RequestError):
    """Overload or quota. `retry_after_s`, when known, is how long the client should
    wait before retrying (the router sends it as the `grpc-retry-pushback-ms` trailer
    and, over HTTP, the `Retry-After` header)."""

    grpc_code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unauthenticated(RequestError):
    grpc_code = "UNAUTHENTICATED"


class PermissionDenied(RequestError):
    grpc_code = "PERMISSION_DENIED"


class Unavailable(RequestError):
    """Nothing was generated; safe to retry, after `retry_after_s` when known (sent
    like ResourceExhausted's)."""

    grpc_code = "UNAVAILABLE"

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(RequestError):
    grpc_code = "DEADLINE_EXCEEDED"


class ReplicaLost(Unavailable):
    """The replica serving a request died, or its engine did: nothing about the request
    itself is wrong, so the router retries (or resumes) it on another replica."""


class Aborted(RequestError):
    """The request failed after part of its stream reached the client and could not be
    resumed; the message and the `shardline-tokens-sent` trailer say how much arrived."""

    grpc_code = "ABORTED"


class EngineFailure(RequestError):
    """The engine died or raised while serving the request."""

    grpc_code = "INTERNAL"


class IntegrityError(ShardlineError):
    """A model directory does not match its signed manifest (or is not signed)."""


class ModelSourceError(ShardlineError):
    """A pretrained model's files could not be fetched (`make models`)."""


def root_cause(exc: BaseException) -> BaseException:
    """The exception a replica raised, out of Ray's wrappers (RayTaskError keeps it as
    `cause`), so a typed error keeps its type across processes."""
    seen = 0
    while hasattr(exc, "cause") and isinstance(exc.cause, BaseException) and seen < 8:
        exc, seen = exc.cause, seen + 1
    return exc
