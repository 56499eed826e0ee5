"""Names on the wire: the metadata keys, trailers and headers that the router, the
client and the tests agree on. gRPC metadata keys and HTTP headers are lowercase
and shared where the two doors carry the same thing.
"""

from shardline.v1 import inference_pb2

INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["Inference"].full_name
"""`shardline.v1.Inference`: the gRPC service name (health checks and retry policies name it)."""
AUTHORIZATION = "authorization"
"""The caller's credentials: `authorization: Bearer <token>` (gRPC metadata and HTTP header)."""
BEARER = "Bearer "
TENANT = "x-shardline-tenant"
"""Without `router.auth`, the tenant a request is metered under when its body names none."""
SESSION = "x-shardline-session"
"""The client's session key (gRPC metadata and HTTP header): with `routing.policy: session`,
requests with the same key go to the same replica while it has room (its prefix cache
holds the conversation so far)."""
TRACE_ID = "shardline-trace-id"
"""The router's answer: the id of the request's trace (gRPC initial metadata, HTTP header)."""
TOKENS_SENT_TRAILER = "shardline-tokens-sent"
"""gRPC trailer on every router error: the tokens the client had received before it."""
RETRY_PUSHBACK_TRAILER = "grpc-retry-pushback-ms"
"""gRPC trailer on a RESOURCE_EXHAUSTED with retry advice: milliseconds to wait before
retrying (the name gRPC's own retry policy reads as server pushback, gRFC A6)."""


def bearer(token: str) -> tuple[str, str]:
    """The metadata entry that presents `token`."""
    return AUTHORIZATION, BEARER + token
