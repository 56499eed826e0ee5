"""The gated activations the MoE ops support: act(gate) * up over w13's two halves."""

from __future__ import annotations

import torch
import torch.nn.functional as F

GATES = {
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


def gated(gate_up: torch.Tensor, activation: str) -> torch.Tensor:
    """`gate_up` is [..., 2I] with the gate half first (vLLM's w13 layout)."""
    if activation not in GATES:
        raise ValueError(f"activation {activation!r} is not supported; supported: {sorted(GATES)}")
    half = gate_up.shape[-1] // 2
    # Two slices, not chunk(): chunk's split + narrows cost more at decode sizes.
    return GATES[activation](gate_up[..., :half]) * gate_up[..., half:]
