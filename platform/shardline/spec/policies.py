"""Spec sections for the router policies: compression, tier costs, uncertainty, tenants, cascades.

Per model: `compression` (how long prompts are shortened before the engine),
`cost` / `latency` (what a token costs on that tier) and `uncertainty` (a score
fitted to that model's own mistakes). Deployment-wide: `policies`
(tenants with budgets, and cascades that answer with a cheap tier first).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

from pydantic import Field, model_validator

from shardline.spec.base import StrictModel

CompressionPolicyName = Literal["none", "truncate_middle", "extractive", "self_information"]
COMPRESSION_POLICIES: tuple[str, ...] = get_args(CompressionPolicyName)
"""Every compression policy by name: the one list the spec, the router and the policies share."""


class CompressionSpec(StrictModel):
    """How the router shortens long prompts for one model (overridable per request)."""

    policy: CompressionPolicyName = "extractive"
    target_ratio: float = Field(4.0, ge=1.0, le=64.0)
    """Original prompt tokens / sent prompt tokens the policy aims for."""
    min_prompt_tokens: int = Field(2000, ge=0, le=1_048_576)
    """Prompts shorter than this are sent unchanged."""
    min_ratio: float = Field(1.3, ge=1.0, le=64.0)
    """Skip compression when the protected parts alone cap the ratio below this."""
    mmr_lambda: float = Field(0.7, ge=0.0, le=1.0)
    """extractive: weight of relevance against redundancy (1 ignores redundancy)."""


UNCERTAINTY_COMPONENTS = ("mean_nll", "low_quantile_prob", "min_margin", "min_window_prob", "max_spill")
"""The raw signals policies/uncertainty.py reports; `max_spill` only from raw logits."""


class UncertaintyMix(StrictModel):
    """A model's own uncertainty score: a logistic mix of the raw components fitted on
    that model's recorded right and wrong answers (`bench/cascade.py` prints one):
    score = sigmoid(bias + sum of weights[c] * (value[c] - mean[c]) / std[c]), the
    estimated chance the answer is wrong. Without it the score is the plain mean of
    the components mapped to [0, 1], which can rank a model's errors worse than one
    component alone. Refit, and recalibrate the cascades' `escalate_above`, whenever
    the model or its prompts change."""

    weights: dict[str, float] = Field(min_length=1)
    mean: dict[str, float]
    std: dict[str, float]
    bias: float = 0.0

    @model_validator(mode="after")
    def _known_components(self) -> UncertaintyMix:
        unknown = sorted(set(self.weights) - set(UNCERTAINTY_COMPONENTS))
        if unknown:
            raise ValueError(
                f"uncertainty components {', '.join(unknown)} are unknown; known: {', '.join(UNCERTAINTY_COMPONENTS)}"
            )
        for name, table in (("mean", self.mean), ("std", self.std)):
            if set(table) != set(self.weights):
                raise ValueError(
                    f"uncertainty.{name} names {sorted(table)}; "
                    f"it must name the weights' components {sorted(self.weights)}"
                )
        for c, v in self.std.items():
            if not v > 0:
                raise ValueError(f"uncertainty.std[{c}] is {v}; it must be greater than 0")
        values = [self.bias, *self.weights.values(), *self.mean.values(), *self.std.values()]
        if not all(math.isfinite(v) for v in values):
            raise ValueError("uncertainty weights, means, stds and bias must be finite numbers")
        return self


class TierCost(StrictModel):
    """Price of one model tier, in credits per 1000 tokens."""

    input_per_1k: float = Field(ge=0, le=1e6)
    output_per_1k: float = Field(ge=0, le=1e6)


class LatencyProfile(StrictModel):
    """Expected latency of a tier: TTFT ~ ttft_ms + prefill_ms_per_1k * prompt/1000."""

    ttft_ms: float = Field(0.0, ge=0, le=1e6)
    prefill_ms_per_1k: float = Field(0.0, ge=0, le=1e6)
    per_token_ms: float = Field(0.0, ge=0, le=1e6)


class TenantSpec(StrictModel):
    """A caller with a spend budget per window (credits, the unit of `TierCost`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    budget: float = Field(gt=0, le=1e12)
    window_s: float = Field(3600.0, gt=0, le=31_536_000)
    """Budget period; spend starts again from 0 when a window ends."""


class CascadeSpec(StrictModel):
    """A virtual model: the first tier answers; escalate while uncertainty is high."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """The name clients send in `model` to use this cascade."""
    tiers: tuple[str, ...] = Field(min_length=2, max_length=8, strict=False)
    """Model names, cheapest first."""
    escalate_above: float = Field(0.5, ge=0.0, le=1.0)
    """Escalate to the next tier when the answer's uncertainty score exceeds this."""


class PoliciesSpec(StrictModel):
    """Deployment-wide policy settings."""

    tenants: tuple[TenantSpec, ...] = Field((), max_length=10_000, strict=False)
    default_tenant: str | None = None
    """Tenant charged when a request names none; None: such requests are not metered."""
    cascades: tuple[CascadeSpec, ...] = Field((), max_length=64, strict=False)

    @model_validator(mode="after")
    def _default_tenant_declared(self) -> PoliciesSpec:
        names = [t.name for t in self.tenants]
        if self.default_tenant is not None and self.default_tenant not in names:
            raise ValueError(f"default_tenant {self.default_tenant!r} is not among tenants ({', '.join(names)})")
        return self

    def tenant(self, name: str) -> TenantSpec | None:
        return next((t for t in self.tenants if t.name == name), None)

    def cascade(self, name: str) -> CascadeSpec | None:
        return next((c for c in self.cascades if c.name == name), None)
