"""Prometheus metrics: every metric Shardline exports, defined in one place.

Each process (router replica, LLM replica) serves the default registry on its
own port (`serve_router_metrics`, `serve_replica_metrics`: fixed ports from
`spec.telemetry`, or free ones); an LLM replica's registry also holds vLLM's own
`vllm:*` metrics (e.g. `vllm:num_requests_waiting`, the engine's queue). Model
labels are set only after admission checked the name, so clients cannot grow
label sets without bound.
"""

from __future__ import annotations

import errno

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from shardline.errors import ShardlineError
from shardline.spec.deployment import TelemetrySpec

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
INTER_TOKEN_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)

# Router
REQUESTS = Counter("shardline_requests", "RPCs the router finished, by method and gRPC status code", ["method", "code"])
REQUEST_DURATION = Histogram(
    "shardline_request_duration_seconds", "End-to-end RPC latency at the router", ["method"], buckets=LATENCY_BUCKETS_S
)
TIME_TO_FIRST_TOKEN = Histogram(
    "shardline_time_to_first_token_seconds",
    "RPC start to the first token at the router",
    ["model"],
    buckets=LATENCY_BUCKETS_S,
)
INTER_TOKEN = Histogram(
    "shardline_inter_token_seconds",
    "Time between tokens at the router (a message's gap over its tokens)",
    ["model"],
    buckets=INTER_TOKEN_BUCKETS_S,
)
INPUT_TOKENS = Counter("shardline_input_tokens", "Prompt tokens of finished requests", ["model"])
OUTPUT_TOKENS = Counter("shardline_output_tokens", "Generated tokens of finished requests", ["model"])

# LLM replica
ONGOING_REQUESTS = Gauge("shardline_replica_ongoing_requests", "Requests a replica is serving", ["model", "replica"])
QUEUE_DEPTH = Gauge(
    "shardline_replica_queue_depth", "Requests in a replica still waiting for their first token", ["model", "replica"]
)

# Policies (compression, cost-aware decoding, cascades): recorded where those run.
COMPRESSION_RATIO = Histogram(
    "shardline_compression_ratio",
    "Prompt tokens after compression over before",
    ["model"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
COST = Counter("shardline_cost", "Cost charged, in the spec's cost units", ["tenant", "tier"])
ESCALATIONS = Counter(
    "shardline_escalations", "Cascade escalations from one tier to the next", ["from_tier", "to_tier"]
)
OVERLOAD_REJECTIONS = Counter(
    "shardline_overload_rejections",
    "Requests refused with RESOURCE_EXHAUSTED because a model (or the router) was at its in-flight limit",
    ["model"],
)
MODEL_IN_FLIGHT = Gauge("shardline_model_in_flight", "Requests in flight per model at this router", ["model"])
ROUTING_DECISIONS = Counter(
    "shardline_routing_decisions",
    "Replica choices by Serve's request router in this process: the policy, why (reason: "
    "prefix, session, no_match, load_guard, least_loaded) and the replica chosen",
    ["model", "policy", "reason", "replica"],
)
ROUTING_MATCHED_BLOCKS = Histogram(
    "shardline_routing_matched_blocks",
    "Leading prompt blocks the router predicted the chosen replica holds in its prefix cache",
    ["model", "policy"],
    buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
ROUTING_PREDICTED_HIT = Histogram(
    "shardline_routing_predicted_hit_ratio",
    "Predicted matched blocks over the prompt's whole blocks, per routed request",
    ["model", "policy"],
    buckets=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
CACHED_PROMPT_TOKENS = Counter(
    "shardline_cached_prompt_tokens",
    "Prompt tokens the engines reported served from their prefix cache (finished replica calls)",
    ["model", "replica"],
)
RETRIES = Counter(
    "shardline_replica_retries",
    "Replica calls repeated after a replica died (kind: retry or resume)",
    ["model", "kind"],
)


def serve_metrics(port: int, host: str = "0.0.0.0") -> int:
    """Serve this process's registry over HTTP (`/metrics`); returns the bound port."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_port


class MetricsPortsTaken(ShardlineError):
    """Every port an engine replica may serve metrics on is taken on this node."""


def router_metrics_port(telemetry: TelemetrySpec) -> int:
    """The port a router replica binds (0: a free one)."""
    return telemetry.metrics_port


def replica_metrics_ports(telemetry: TelemetrySpec) -> range:
    """The ports an engine replica tries, in order; empty: a free one."""
    base = telemetry.replica_metrics_port
    return range(base, base + telemetry.replica_metrics_ports) if base else range(0)


def serve_router_metrics(telemetry: TelemetrySpec) -> int | None:
    """The router's endpoint (`router_metrics_port`); None when metrics are off."""
    return serve_metrics(router_metrics_port(telemetry)) if telemetry.metrics else None


def serve_replica_metrics(telemetry: TelemetrySpec) -> int | None:
    """An engine replica's endpoint: the first free port of `replica_metrics_ports`
    (several replicas may share a node), or any free port when none is fixed."""
    if not telemetry.metrics:
        return None
    candidates = replica_metrics_ports(telemetry)
    if not candidates:
        return serve_metrics(0)
    for port in candidates:
        try:
            return serve_metrics(port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise MetricsPortsTaken(
        f"replica metrics: ports {candidates[0]}..{candidates[-1]} are all in use on this node "
        f"(telemetry.replica_metrics_port {candidates[0]}, replica_metrics_ports {len(candidates)}); "
        "more replicas share the node than there are ports: raise replica_metrics_ports"
    )
