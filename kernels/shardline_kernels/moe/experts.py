"""Expert weights in the form the CPU kernel multiplies by.

`Experts` holds the plain [E, 2I, H] / [E, H, I] tensors as given (any dtype,
views allowed): one `torch.mm` per GEMM, the path of `cpu.fused_moe` and of the
parity tests. `prepack` converts them once, when vLLM has loaded a layer:

- bf16/fp16 experts on a CPU whose oneDNN runs that dtype natively (AVX512-BF16,
  AMX, AVX-NE-CONVERT) are reordered into oneDNN's blocked layout
  (`mkldnn._reorder_linear_weight`) and multiplied by `mkldnn._linear_pointwise`
  (issue 19's probe on an AMX Xeon: 1.4-1.6x per expert GEMM over `F.linear`);
- without it (AVX2 only) they are widened to fp32, exactly, at twice the memory:
  PyTorch's bf16 GEMM takes a slow path there (a 256 x 1024 x 7168 GEMM took
  363 ms in bf16, 46 ms in fp32 on the AVX2 dev machine);
- fp32 (given or widened) expert matrices of at least `BLOCKED_MIN_WEIGHTS`
  weights are reordered into the blocked layout too; smaller ones stay plain.

A blocked layout is a copy: the vLLM wiring keeps the layer's own weights beside it.
"""

from __future__ import annotations

import torch

# oneDNN's own check per low-precision dtype: does this CPU run its GEMMs natively?
NATIVE = {
    torch.bfloat16: lambda: torch.ops.mkldnn._is_mkldnn_bf16_supported(),
    torch.float16: lambda: torch.ops.mkldnn._is_mkldnn_fp16_supported(),
}


# In fp32, oneDNN's blocked matmul costs ~20 µs more per call than torch.mm on
# the AVX2 dev machine (28 vs 8 µs at 1 x 512 -> 128); from about a million
# weights per expert matrix its faster GEMM wins that back (1.3-1.9x at 8 rows
# of 1024 -> 7168 and 3584 -> 1024). Not at 1 token: a Mixtral / 4 layer streaming
# its weights from DRAM ran at 0.83x of the plain weights (bench/README.md, Kernels).
BLOCKED_MIN_WEIGHTS = 1 << 20


class Experts:
    """Plain weights: `gate_up(e, x)` = x @ w13[e].T, `down(e, h)` = h @ w2[e].T."""

    def __init__(self, w13: torch.Tensor, w2: torch.Tensor):
        self.w13, self.w2 = w13, w2
        self.count = w13.shape[0]
        self.dtype = w13.dtype
        """The dtype the GEMMs take their inputs in."""
        # Each expert's transposed views, made once: at decode sizes the per-call
        # select + transpose views cost about as much as a small GEMM's dispatch.
        self._w13_t, self._w2_t = [w.t() for w in w13], [w.t() for w in w2]

    def gate_up(self, expert: int, x: torch.Tensor) -> torch.Tensor:
        return torch.mm(x, self._w13_t[expert])

    def down(self, expert: int, h: torch.Tensor) -> torch.Tensor:
        return torch.mm(h, self._w2_t[expert])


class PackedExperts(Experts):
    """Per expert, both weight matrices in oneDNN's blocked layout."""

    def __init__(self, w13: torch.Tensor, w2: torch.Tensor, batch_hint: int):
        self.count, self.dtype = w13.shape[0], w13.dtype
        self.w13, self.w2 = _reorder(w13, batch_hint), _reorder(w2, batch_hint)

    def gate_up(self, expert: int, x: torch.Tensor) -> torch.Tensor:
        return _linear(x, self.w13[expert])

    def down(self, expert: int, h: torch.Tensor) -> torch.Tensor:
        return _linear(h, self.w2[expert])


def prepack(
    w13: torch.Tensor, w2: torch.Tensor, batch_hint: int = 16, blocked_min_weights: int = BLOCKED_MIN_WEIGHTS
) -> Experts:
    """The fastest form this CPU multiplies `w13` / `w2` in; `batch_hint` is the row
    count oneDNN tunes the blocked layout for (decode-sized by default)."""
    if w13.dtype in NATIVE:
        if native(w13.dtype):
            return PackedExperts(w13, w2, batch_hint)
        w13, w2 = w13.float(), w2.float()
    if torch.backends.mkldnn.is_available() and w2[0].numel() >= blocked_min_weights:
        return PackedExperts(w13, w2, batch_hint)
    return Experts(w13.contiguous(), w2.contiguous())


def native(dtype: torch.dtype) -> bool:
    """Whether oneDNN runs `dtype` GEMMs in hardware here (else reordering such weights fails)."""
    return torch.backends.mkldnn.is_available() and NATIVE[dtype]()


def _reorder(weights: torch.Tensor, batch_hint: int) -> list[torch.Tensor]:
    return [torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), batch_hint) for w in weights]


def _linear(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
