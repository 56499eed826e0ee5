"""The kernel parity rule (flash-attention's): measured against an fp64 gold output,
an op's error may be at most ~2x the error of the plain PyTorch reference run in
the same precision. `floor` absorbs rounding noise where both errors are ~0 (fp32).
"""

from __future__ import annotations

import torch

ERROR_RATIO = 2.0
FP32_FLOOR = 1e-5


def max_error(out: torch.Tensor, gold: torch.Tensor) -> float:
    return (out.double() - gold.double()).abs().max().item()


def assert_parity(op_out: torch.Tensor, ref_out: torch.Tensor, gold: torch.Tensor) -> None:
    assert op_out.dtype == ref_out.dtype and op_out.shape == gold.shape
    assert torch.isfinite(op_out).all()
    op, ref = max_error(op_out, gold), max_error(ref_out, gold)
    floor = FP32_FLOOR * max(gold.abs().max().item(), 1.0)
    assert op <= ERROR_RATIO * ref + floor, (
        f"op error {op:.3g} > {ERROR_RATIO} x reference error {ref:.3g} + {floor:.3g}"
    )


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
