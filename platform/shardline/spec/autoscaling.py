"""How a model's replica count follows its load: the `replicas.autoscaling` section.

The decision itself is `policies/autoscaling.py` (a pure function of the replicas'
reports); Serve's controller calls it through `serve/autoscaling.py`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from shardline.spec.base import StrictModel


class AutoscalingSpec(StrictModel):
    """Scaling on what an LLM replica is short of: requests waiting in its engine,
    KV-cache room, time to first token. A model scales up when any signal passes its
    threshold for `upscale_delay_s`, and down (one replica at a time) when every
    signal has stayed under `scale_down_fraction` of its threshold for
    `downscale_delay_s`; between the two nothing changes (hysteresis)."""

    waiting_per_replica: float = Field(2.0, ge=0, le=100_000)
    """Scale up when the engines hold more than this many requests waiting for a batch
    slot, on average per replica (vLLM's `num_requests_waiting`). Default 2."""
    kv_cache_usage: float = Field(0.9, gt=0, le=1)
    """Scale up when the engines' KV caches are fuller than this fraction on average
    (vLLM's `kv_cache_usage_perc`); a full cache preempts running requests. Default 0.9."""
    ttft_target_s: float | None = Field(None, gt=0, le=3600)
    """Scale up when the recent time to first token (the slowest replica's; a request
    still waiting for its first token counts with its age) exceeds it. Unset: not a
    signal. Set it above the TTFT of a long prompt on an idle replica."""
    ttft_window_s: float = Field(10.0, gt=0, le=600)
    """How long a request's TTFT counts as recent for `ttft_target_s`: one slow prefill
    holds the signal up this long. Shorter reacts sooner and forgets sooner. Default 10 s."""
    scale_down_fraction: float = Field(0.5, gt=0, lt=1)
    """Scale down only when every signal is below this fraction of its threshold, and
    the in-flight requests would fit one replica fewer at this fraction of
    `target_ongoing_requests`. Default 0.5."""
    upscale_delay_s: float = Field(10.0, ge=0, le=3600)
    """How long overload must last before a replica is added. Default 10 s."""
    downscale_delay_s: float = Field(60.0, ge=0, le=3600)
    """How long a model must stay under the scale-down thresholds before one replica
    leaves (it drains: see `rollout.drain_timeout_s`). Default 60 s."""
    scale_to_zero_delay_s: float = Field(300.0, ge=0, le=86_400)
    """With `replicas.min` 0: how long the last replica must have no request at all
    before it stops. Default 300 s."""
    hold_timeout_s: float = Field(60.0, gt=0, le=3600)
    """With `replicas.min` 0: how long the router holds a request while the first
    replica starts. Must be less than `router.limits.default_deadline_s`, which caps
    every request's deadline (a client's shorter deadline ends the hold sooner). Past it the request ends
    UNAVAILABLE with retry advice; nothing was generated. Set it above the replica's
    start time (engine load and warm-up). Default 60 s."""
    metrics_interval_s: float = Field(1.0, ge=0.1, le=60)
    """How often each replica sends its signals to Serve's controller. Default 1 s."""
    look_back_s: float = Field(5.0, gt=0, le=600)
    """Window over which the controller averages each replica's signals. Must exceed
    `metrics_interval_s`. Default 5 s."""

    @model_validator(mode="after")
    def _window_holds_reports(self) -> AutoscalingSpec:
        if self.look_back_s <= self.metrics_interval_s:
            raise ValueError(
                f"look_back_s ({self.look_back_s:g}) must be greater than metrics_interval_s "
                f"({self.metrics_interval_s:g}): the window would hold no report"
            )
        return self
