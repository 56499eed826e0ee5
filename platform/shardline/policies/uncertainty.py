"""An uncertainty score in [0, 1] for one answer, from its token logprobs.

Training-free signals (research notes §3), each mapped to [0, 1] (1 = unsure):
- `mean_nll`: 1 - exp(-mean NLL), one minus the geometric-mean token probability;
- `low_quantile`: 1 - the 10th-percentile token probability (Chow-Quantile);
- `min_margin`: exp(-(top-1 minus top-2 logprob)) at the least decided step;
- `window`: 1 - the lowest mean token probability over a sliding window (DeepConf);
- `spilled_energy` (only from raw logits): 1 - exp(-max spill), where the spill at
  step i is LSE(f_{i+1}) - f_i[x_{i+1}] (arXiv 2602.18671). vLLM returns only the
  top-k logits, so LSE is their logsumexp: a lower bound, tight for peaked steps.
The score is the mean of the available components, or, when the model's spec has
an `uncertainty` mix fitted to its own errors, that logistic mix of the raw values;
components are reported raw either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from shardline.generation import TokenLogprob
from shardline.spec.policies import UncertaintyMix

WINDOW = 4
QUANTILE = 0.1


@dataclass(frozen=True, slots=True)
class Uncertainty:
    score: float
    components: dict[str, float] = field(default_factory=dict)
    """Raw signal values: mean_nll, low_quantile_prob, min_margin, min_window_prob, max_spill."""


def score(tokens: Sequence[TokenLogprob], raw_logits: bool = False, mix: UncertaintyMix | None = None) -> Uncertainty:
    """Score an answer; with `raw_logits` the values are logits, normalised over the top-k."""
    if not tokens:
        return Uncertainty(1.0, {})
    spill = max_spill(tokens) if raw_logits else None
    steps = [normalise(t) for t in tokens] if raw_logits else list(tokens)
    probs = [math.exp(t.logprob) for t in steps]
    raw = {
        "mean_nll": -sum(t.logprob for t in steps) / len(steps),
        "low_quantile_prob": _quantile(probs, QUANTILE),
        "min_margin": min((t.top[0] - t.top[1] for t in steps if len(t.top) >= 2), default=0.0),
        "min_window_prob": _min_window_mean(probs, WINDOW),
    }
    unsure = [
        1 - math.exp(-raw["mean_nll"]),
        1 - raw["low_quantile_prob"],
        math.exp(-raw["min_margin"]),
        1 - raw["min_window_prob"],
    ]
    if spill is not None:
        raw["max_spill"] = spill
        unsure.append(1 - math.exp(-max(spill, 0.0)))
    if mix is not None:
        return Uncertainty(mixed(mix, raw), raw)
    return Uncertainty(min(1.0, max(0.0, sum(unsure) / len(unsure))), raw)


def mixed(mix: UncertaintyMix, raw: dict[str, float]) -> float:
    """sigmoid(bias + sum of w_c * z_c), z_c the component standardised as fitted."""
    z = mix.bias + sum(w * (raw[c] - mix.mean[c]) / mix.std[c] for c, w in mix.weights.items())
    return 0.5 * (1 + math.tanh(z / 2))  # the logistic function, without overflow


def normalise(step: TokenLogprob) -> TokenLogprob:
    """Raw logits -> logprobs over the returned top-k (and the sampled token)."""
    lse = _logsumexp(step.top or (step.logprob,))
    return TokenLogprob(step.logprob - lse, tuple(v - lse for v in step.top))


def max_spill(tokens: Sequence[TokenLogprob]) -> float:
    """max_i LSE(f_{i+1}) - f_i[x_{i+1}] over consecutive steps (0 for a single step)."""
    lse = [_logsumexp(t.top or (t.logprob,)) for t in tokens]
    return max((lse[i + 1] - tokens[i].logprob for i in range(len(tokens) - 1)), default=0.0)


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _min_window_mean(values: Sequence[float], width: int) -> float:
    width = min(width, len(values))
    total = sum(values[:width])
    best = total
    for i in range(width, len(values)):
        total += values[i] - values[i - width]
        best = min(best, total)
    return best / width
