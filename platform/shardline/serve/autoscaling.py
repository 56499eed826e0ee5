"""Serve's custom autoscaling policy for the engine deployments, and the replicas'
side of it.

Each replica reports its engine's signals through Serve's `record_autoscaling_stats`
hook (LLMServer, every `autoscaling.metrics_interval_s`); the controller averages
them over `autoscaling.look_back_s` and calls `LLMAutoscalingPolicy` every control
tick (0.1 s). The decision is `policies/autoscaling.py`'s pure `decide`; this module
only translates Serve's `AutoscalingContext` into its inputs.

Serve wraps a custom policy with its own delays and scaling factors: they are set
to pass the decision through unchanged (delays 0), so the spec's delays, applied
inside `decide`, are the only ones. Serve's own cold-start path (0 replicas and a
request held by a handle: scale to 1 at once) runs before the policy.
"""

from __future__ import annotations

import logging
from typing import Any

from shardline.policies import autoscaling as policy
from shardline.spec.autoscaling import AutoscalingSpec
from shardline.spec.deployment import ModelSpec

logger = logging.getLogger("ray.serve")

WAITING, RUNNING, KV_CACHE_USAGE, TTFT_S = "engine_waiting", "engine_running", "kv_cache_usage", "ttft_s"
"""Names of the metrics a replica reports (LLMServer.record_autoscaling_stats)."""
PUSH_INTERVAL_ENV = "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S"
"""Read by Serve in each replica at import: how often it sends its metrics."""


class LLMAutoscalingPolicy:
    """Serve instantiates it once per deployment with `policy_kwargs` (JSON)."""

    def __init__(self, autoscaling: dict, min: int, max: int, target_ongoing_requests: float):
        self._config = AutoscalingSpec.model_validate(autoscaling)
        self._bounds = policy.Bounds(min, max, target_ongoing_requests)
        self._last: int | None = None

    def __call__(self, ctx: Any) -> tuple[int, dict]:
        previous = ctx.policy_state.get("shardline", {})
        decision = policy.decide(
            signals(ctx.aggregated_metrics or {}, ctx.running_replicas, ctx.total_num_requests),
            self._config,
            self._bounds,
            ctx.current_num_replicas,
            ctx.target_num_replicas,
            ctx.current_time,
            policy.State(previous.get("wants", ""), previous.get("since", 0.0)),
        )
        if decision.replicas != ctx.target_num_replicas and decision.replicas != self._last:
            logger.info(
                "autoscaling %s: %d -> %d (%s)",
                ctx.deployment_name,
                ctx.target_num_replicas,
                decision.replicas,
                decision.reason,
            )
        self._last = decision.replicas
        state = {"wants": decision.state.wants, "since": decision.state.since, "reason": decision.reason}
        return decision.replicas, {**ctx.policy_state, "shardline": state}


def signals(metrics: dict[str, dict[Any, float]], running: list, ongoing: float) -> policy.Signals:
    """Serve's aggregated custom metrics (name -> replica -> window average) as the
    policy's signals, for the running replicas that have reported."""
    reported = [r for r in running if r in metrics.get(WAITING, {})]
    loads = tuple(
        policy.ReplicaLoad(
            waiting=metrics[WAITING][r],
            running=metrics.get(RUNNING, {}).get(r, 0.0),
            kv_cache_usage=metrics.get(KV_CACHE_USAGE, {}).get(r, 0.0),
            ttft_s=metrics.get(TTFT_S, {}).get(r, 0.0),
        )
        for r in reported
    )
    return policy.Signals(loads, float(ongoing or 0.0))


def autoscaling_config(model: ModelSpec) -> dict:
    """Serve's `autoscaling_config` for an autoscaled model (replicas.min != max)."""
    r, a = model.replicas, model.replicas.autoscaling
    return {
        "min_replicas": r.min,
        "max_replicas": r.max,
        "target_ongoing_requests": r.target_ongoing_requests,
        # Serve's deprecated name for the replicas' push interval (replica_env sets the
        # real one); given, so Serve's check that the window exceeds it holds.
        "metrics_interval_s": a.metrics_interval_s,
        "look_back_period_s": a.look_back_s,
        "upscale_delay_s": 0.0,
        "downscale_delay_s": 0.0,
        "downscale_to_zero_delay_s": 0.0,
        "policy": {
            "policy_function": f"{__name__}:{LLMAutoscalingPolicy.__name__}",
            "policy_kwargs": {
                "autoscaling": a.model_dump(mode="json"),
                "min": r.min,
                "max": r.max,
                "target_ongoing_requests": r.target_ongoing_requests,
            },
        },
    }


def replica_env(model: ModelSpec) -> dict[str, str]:
    """Environment for an autoscaled model's replicas: Serve's metrics push interval."""
    if not model.replicas.autoscaled:
        return {}
    return {PUSH_INTERVAL_ENV: f"{model.replicas.autoscaling.metrics_interval_s:g}"}
