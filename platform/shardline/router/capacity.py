"""Per-model admission: how many requests each model may have in flight at this router.

A model holds what its ready replicas can hold: each serves `max_ongoing_requests`
at once and lets `max_queued_requests` wait for a slot. Beyond ready x (ongoing +
queued) the router rejects at once with RESOURCE_EXHAUSTED and retry advice: a
request Ray Serve would queue without bound only adds latency to everyone behind
it, and its client learns nothing until its deadline.

Each router replica counts only its own requests, so each takes an equal share of
a model's capacity, rounded up (the routers together may exceed it by at most
router.replicas - 1; Serve's own queue, bounded the same way in serve/app.py,
absorbs that). A cascade request holds a slot on every tier it may call, for its
whole life: it may escalate, and an escalation must not be the request that
overflows the larger tier.

Retry advice: how long this model's recent requests took (an exponential moving
average), so a client that waits that long finds the requests ahead of it gone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from shardline.errors import ResourceExhausted
from shardline.spec.deployment import DeploymentSpec
from shardline.telemetry import metrics

DEFAULT_RETRY_AFTER_S = 1.0
"""Advice before any request of a model has finished."""
MIN_RETRY_AFTER_S = 0.1
MAX_RETRY_AFTER_S = 30.0
SMOOTHING = 0.2
"""Weight of the latest request's duration in the moving average."""


@dataclass(frozen=True)
class Held:
    """The slots one admitted request holds, and when it took them."""

    models: tuple[str, ...]
    since: float


class Capacity:
    def __init__(self, spec: DeploymentSpec, clock: Callable[[], float] = time.monotonic):
        self._spec = spec
        self._clock = clock
        self.in_flight: dict[str, int] = {m.name: 0 for m in spec.models}
        self._duration_s: dict[str, float] = {}

    def limit(self, model: str, ready: int) -> int:
        """Requests `model` may have in flight at this router with `ready` replicas."""
        replicas = self._spec.model(model).replicas
        total = ready * (replicas.max_ongoing_requests + replicas.max_queued_requests)
        return math.ceil(total / self._spec.router.replicas)

    def take(self, models: Iterable[str], ready: dict[str, int]) -> Held:
        """One slot on each of `models`, or ResourceExhausted naming the first that is full."""
        models = tuple(dict.fromkeys(models))
        for model in models:
            limit = self.limit(model, ready.get(model, 0))
            if self.in_flight[model] >= limit:
                metrics.OVERLOAD_REJECTIONS.labels(model).inc()
                raise self._full(model, ready.get(model, 0), limit)
        for model in models:
            self.in_flight[model] += 1
            metrics.MODEL_IN_FLIGHT.labels(model).inc()
        return Held(models, self._clock())

    def give(self, held: Held, finished: bool) -> None:
        """Free `held`; a request that `finished` (its last token went out) teaches the
        retry advice how long requests take here."""
        elapsed = self._clock() - held.since
        for model in held.models:
            self.in_flight[model] -= 1
            metrics.MODEL_IN_FLIGHT.labels(model).dec()
            if finished:
                last = self._duration_s.get(model)
                self._duration_s[model] = elapsed if last is None else last + SMOOTHING * (elapsed - last)

    def retry_after_s(self, model: str | None = None) -> float:
        """Advice for a rejected client: `model`'s typical request duration (any model's
        longest when None), within [MIN_RETRY_AFTER_S, MAX_RETRY_AFTER_S]."""
        if model is None:
            typical = max(self._duration_s.values(), default=DEFAULT_RETRY_AFTER_S)
        else:
            typical = self._duration_s.get(model, DEFAULT_RETRY_AFTER_S)
        return min(max(typical, MIN_RETRY_AFTER_S), MAX_RETRY_AFTER_S)

    def _full(self, model: str, ready: int, limit: int) -> ResourceExhausted:
        r = self._spec.model(model).replicas
        routers = self._spec.router.replicas
        share = f" / {routers} router replicas" if routers > 1 else ""
        after = self.retry_after_s(model)
        return ResourceExhausted(
            f"model {model!r} has {self.in_flight[model]} requests in flight at this router; its limit is {limit} "
            f"({ready} ready replica(s) x (max_ongoing_requests {r.max_ongoing_requests} + max_queued_requests "
            f"{r.max_queued_requests}){share}); retry after {after:.1f} s",
            retry_after_s=after,
        )
