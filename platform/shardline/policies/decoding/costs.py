"""What a request costs on a tier, in credits (the unit of the spec's `TierCost`)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    input_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_1k + output_tokens * self.output_per_1k) / 1000

    def affordable_output(self, input_tokens: int, credits: float) -> int:
        """Most output tokens `credits` pay for after the prompt (may be negative)."""
        left = credits - self.cost(input_tokens, 0)
        if self.output_per_1k == 0:
            return 1 << 30 if left >= 0 else -1
        # A hair under the exact quotient, so rounding never lets spend pass the budget.
        return math.floor(left * 1000 / self.output_per_1k * (1 - 1e-12))
