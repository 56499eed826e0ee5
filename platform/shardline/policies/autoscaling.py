"""The autoscaling decision: how many replicas a model should have, from what its
replicas report. Pure: signals + config + the current count + the clock in, a count
and the next state out; Serve's controller calls it through serve/autoscaling.py.

- Up when any signal passes its threshold (requests waiting in the engines, KV-cache
  usage, recent TTFT against its target, in-flight requests per replica) for
  `upscale_delay_s` without a break: to as many replicas as the worst signal's
  overshoot asks (at least one more).
- Down, one replica at a time, when every signal has stayed under
  `scale_down_fraction` of its threshold for `downscale_delay_s`; between the two
  lines nothing changes (hysteresis), and any break restarts the clock.
- To zero (`replicas.min` 0) only from one replica with no request anywhere for
  `scale_to_zero_delay_s`; from zero to one as soon as a request is waiting.
- While replicas are starting or stopping (Serve's target differs from the running
  count) the decision stays at the target: a replica still loading its model has not
  taken load yet, and counting its absence again would overshoot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shardline.spec.autoscaling import AutoscalingSpec

UP, DOWN, ZERO = "up", "down", "zero"


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica's report, averaged over the look-back window."""

    waiting: float = 0.0
    """Requests waiting in the engine for a batch slot."""
    running: float = 0.0
    """Requests in the engine's running batch."""
    kv_cache_usage: float = 0.0
    """Fraction of the engine's KV-cache blocks in use, 0..1."""
    ttft_s: float = 0.0
    """Recent time to first token (0: no request recently)."""


@dataclass(frozen=True)
class Signals:
    replicas: tuple[ReplicaLoad, ...]
    """Reports of the running replicas that have sent one (a new replica may not yet)."""
    ongoing: float
    """Requests in flight for the model, the ones Serve's handles still hold included."""


@dataclass(frozen=True)
class Bounds:
    min: int
    max: int
    target_ongoing_requests: float


@dataclass(frozen=True)
class State:
    """What the policy remembers between calls: which way it wants to go, since when."""

    wants: str = ""
    since: float = 0.0


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    state: State


def decide(
    signals: Signals, config: AutoscalingSpec, bounds: Bounds, running: int, target: int, now: float, state: State
) -> Decision:
    """The replica count for `running` replicas (Serve's `target` when it differs: in
    transition) given `signals`, at time `now`."""
    if running == 0 or target == 0:
        if signals.ongoing > 0:
            return Decision(max(1, bounds.min, target), "a request is waiting and no replica runs", State())
        return Decision(max(bounds.min, target), "idle at zero", State())
    if running != target:
        return Decision(target, f"in transition: {running} running, target {target}", State())
    ratio, why = overload(signals, config, bounds, running)
    if ratio > 1:
        wanted = min(bounds.max, max(running + 1, math.ceil(running * ratio)))
        return _after_delay(UP, wanted, running, why, config.upscale_delay_s, now, state)
    if running > max(bounds.min, 1) and underloaded(signals, config, bounds, running):
        why = "every signal under the scale-down line"
        return _after_delay(DOWN, running - 1, running, why, config.downscale_delay_s, now, state)
    if running == 1 and bounds.min == 0 and signals.ongoing == 0 and _idle(signals):
        return _after_delay(ZERO, 0, running, "no request anywhere", config.scale_to_zero_delay_s, now, state)
    return Decision(_clamp(running, bounds), "within thresholds", State())


def overload(signals: Signals, config: AutoscalingSpec, bounds: Bounds, running: int) -> tuple[float, str]:
    """The worst signal's value over its threshold (above 1: overloaded), and which it is."""
    loads = signals.replicas
    ratios = {"ongoing requests per replica": signals.ongoing / running / bounds.target_ongoing_requests}
    if loads:
        # Replicas' worth of work held: running + waiting over what one may hold
        # (its batch plus the allowed wait).
        held = sum(r.running + r.waiting for r in loads) / len(loads)
        batch = sum(r.running for r in loads) / len(loads)
        ratios["requests waiting per replica"] = held / max(batch + config.waiting_per_replica, 1.0)
        ratios["KV-cache usage"] = sum(r.kv_cache_usage for r in loads) / len(loads) / config.kv_cache_usage
        if config.ttft_target_s is not None:
            ratios["TTFT"] = max(r.ttft_s for r in loads) / config.ttft_target_s
    name = max(ratios, key=ratios.get)
    return ratios[name], name


def underloaded(signals: Signals, config: AutoscalingSpec, bounds: Bounds, running: int) -> bool:
    """Every signal under its scale-down line, with one replica fewer taking the load."""
    f = config.scale_down_fraction
    if signals.ongoing / (running - 1 or 1) > f * bounds.target_ongoing_requests:
        return False
    for r in signals.replicas:
        if r.waiting > f * config.waiting_per_replica or r.kv_cache_usage > f * config.kv_cache_usage:
            return False
        if config.ttft_target_s is not None and r.ttft_s > f * config.ttft_target_s:
            return False
    return True


def _idle(signals: Signals) -> bool:
    return all(r.waiting == 0 and r.kv_cache_usage == 0 for r in signals.replicas)


def _after_delay(wants: str, wanted: int, running: int, why: str, delay_s: float, now: float, state: State) -> Decision:
    """`wanted` once the same wish has lasted `delay_s`; until then `running`."""
    since = state.since if state.wants == wants else now
    if now - since >= delay_s:
        return Decision(wanted, f"{wants}: {why} for {now - since:.1f} s", State())
    return Decision(running, f"{wants} in {delay_s - (now - since):.1f} s: {why}", State(wants, since))


def _clamp(replicas: int, bounds: Bounds) -> int:
    return min(max(replicas, bounds.min), bounds.max)
