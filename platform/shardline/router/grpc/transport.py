"""The router's gRPC transport limits: what one connection may send before a handler runs.

gRPC core enforces these, so a breach never reaches our code: a message over
`max_receive_message_length` or metadata over `max_metadata_bytes` ends that call
with RESOURCE_EXHAUSTED (gRPC's own message quotes the size and the limit) and the
connection, and the router, keep serving. Keepalive is enforced both ways: the
router pings quiet clients to find dead peers, and a client that pings more often
than `MIN_CLIENT_PING_INTERVAL_MS` is sent GOAWAY (too_many_pings).
"""

from __future__ import annotations

from shardline.spec.deployment import RouterLimits

MIN_MESSAGE_BYTES = 4 * 1024 * 1024  # gRPC's default; room for every field besides the prompt
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
KEEPALIVE_TIME_MS = 60_000  # ping a connection after a minute without frames
KEEPALIVE_TIMEOUT_MS = 20_000  # no ack by then: the peer is gone, close the connection
MIN_CLIENT_PING_INTERVAL_MS = 10_000
MAX_PING_STRIKES = 2  # pings under the interval tolerated before GOAWAY
MAX_CONNECTION_IDLE_MS = 10 * 60_000  # free the sockets of clients that went quiet
# Long-lived channels are closed (GOAWAY) after this age, so clients spread over
# router replicas that came up later; the grace outlasts any call (see `server_options`).
MAX_CONNECTION_AGE_MS = 30 * 60_000
AGE_GRACE_MARGIN_MS = 5_000


def max_receive_bytes(limits: RouterLimits) -> int:
    """Largest message the router accepts: twice the largest prompt (protobuf
    overhead, other fields), at least gRPC's default and at most 64 MiB."""
    return min(max(limits.max_prompt_bytes * 2, MIN_MESSAGE_BYTES), MAX_MESSAGE_BYTES)


def server_options(limits: RouterLimits) -> list[tuple[str, int]]:
    """Channel arguments of the router's grpc.aio server."""
    # Every call's deadline is capped at default_deadline_s (servicer._timeout), so
    # a call in flight when its connection ages out always finishes within the grace.
    age_grace_ms = int(limits.default_deadline_s * 1000) + AGE_GRACE_MARGIN_MS
    return [
        ("grpc.max_receive_message_length", max_receive_bytes(limits)),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # Soft and hard limit equal: gRPC rejects between them at random otherwise.
        ("grpc.max_metadata_size", limits.max_metadata_bytes),
        ("grpc.absolute_max_metadata_size", limits.max_metadata_bytes),
        ("grpc.max_concurrent_streams", limits.max_streams_per_connection),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),  # clients may ping idle connections too, within the interval
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_MS),
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
        ("grpc.max_connection_age_grace_ms", age_grace_ms),
        ("grpc.so_reuseport", 1),  # router replicas on one node share the port
    ]
