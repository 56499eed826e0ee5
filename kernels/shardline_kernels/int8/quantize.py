"""Symmetric per-output-channel int8 quantization of a [N, K] weight."""

from __future__ import annotations

import torch

QMAX = 127


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (qweight int8 [N, K], scales fp32 [N]) with weight ≈ qweight * scales[:, None]."""
    w = weight.float()
    scales = w.abs().amax(dim=1).clamp_min(1e-12) / QMAX
    qweight = torch.round(w / scales[:, None]).clamp_(-QMAX, QMAX).to(torch.int8)
    return qweight, scales
