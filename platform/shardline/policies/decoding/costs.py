"""What a request costs on a tier: credits (the spec's `TierCost`) and expected seconds
(its `LatencyProfile`; zero when the spec declares none)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    input_per_1k: float = 0.0
    output_per_1k: float = 0.0
    ttft_ms: float = 0.0
    prefill_ms_per_1k: float = 0.0
    per_token_ms: float = 0.0

    def latency_s(self, input_tokens: int, output_tokens: int) -> float:
        ms = self.ttft_ms + self.prefill_ms_per_1k * input_tokens / 1000 + self.per_token_ms * output_tokens
        return ms / 1000

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_1k + output_tokens * self.output_per_1k) / 1000

    def affordable_output(self, input_tokens: int, credits: float) -> int:
        """Most output tokens `credits` pay for after the prompt (may be negative)."""
        left = credits - self.cost(input_tokens, 0)
        if self.output_per_1k == 0:
            return 1 << 30 if left >= 0 else -1
        # A hair under the exact quotient, so rounding never lets spend pass the budget.
        return math.floor(left * 1000 / self.output_per_1k * (1 - 1e-12))
