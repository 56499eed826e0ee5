"""Our Triton kernels on a real GPU: parity, then speed against PyTorch/cuBLAS.

For a lent GPU machine that has only torch and triton: no vLLM, Ray, pydantic,
network or install. It imports torch, triton, our kernel modules
(kernels/shardline_kernels) and the parity rule and cases the tests use
(tests/parity.py, tests/kernel_cases.py), found from this file's checkout.

Parity (the tolerance rule of tests/parity.py): the Triton fused MoE (expert maps
for all-local and both ranks of EP=2, skewed routing, odd and strided shapes) and
the Triton int8 W8A16 linear, in fp32, bf16 and fp16, each against an fp64 result;
its error may be at most 2x that of the plain PyTorch reference run on CUDA in the
same precision.
Speed: the fused MoE against PyTorch grouped by expert (one cuBLAS GEMM pair per
expert), and the int8 linear against the bf16 dense `F.linear` (cuBLAS) and the
dequantize-then-matmul reference, with the weight bytes/s it reaches as a fraction
of the copy bandwidth measured in the same run.

    make gpu-check                                   # writes bench/results/kernels-gpu.json
    python3 bench/kernels/gpu_check.py OUT.json      # the same, anywhere in the checkout

Exit status: 0 all parity cases pass; 1 some failed (listed, and in the JSON);
2 no CUDA device (one line, nothing checked, no JSON written).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT / "kernels", ROOT / "tests", Path(__file__).parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import machine  # noqa: E402

NO_CUDA_STATUS = 2
DEVICE = "cuda"
"""Where the parity cases run (tests/kernels/test_gpu_check.py runs them on "cpu" in Triton's interpreter)."""
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# (tokens, hidden, intermediate): one token, odd sizes, a prefill-sized batch.
MOE_SHAPES = [(1, 128, 64), (63, 769, 383), (512, 1024, 512)]
MOE_PATTERNS = ["random", "one-expert", "two-experts"]
MOE_MAPS = ["all-local", "ep-rank0-of-2", "ep-rank1-of-2"]
# (tokens, K, N): a GEMV, odd sizes, a batch.
INT8_SHAPES = [(1, 4096, 4096), (63, 769, 1023), (256, 4096, 11008)]
# (name, experts, top-k, hidden, intermediate): bench/kernels/moe.py's layers and a whole Mixtral-8x7B layer.
MOE_LAYERS = [
    ("tiny-mixtral", 4, 2, 128, 512),
    ("mixtral-quarter", 8, 2, 1024, 3584),
    ("mixtral-8x7b", 8, 2, 4096, 14336),
]
MOE_TOKENS = [1, 16, 512, 4096]
INT8_BENCH_SHAPES = [(1, 4096, 4096), (1, 4096, 11008), (1, 11008, 4096), (16, 4096, 4096), (512, 4096, 4096)]
ROTATE_BYTES = 1 << 30  # far more than an H200's L2 (60 MiB): timed calls read weights from HBM


def load_kernels() -> dict:
    """Our Triton kernels and their references: only torch and triton beneath them."""
    from shardline_kernels.int8 import reference as int8_reference
    from shardline_kernels.int8 import triton_linear
    from shardline_kernels.moe import reference as moe_reference
    from shardline_kernels.moe import triton_moe

    return {"moe": triton_moe, "moe_ref": moe_reference, "int8": triton_linear, "int8_ref": int8_reference}


def cuda_seconds(fn, repeat: int = 20, warmup: int = 3) -> float:
    """Median of `repeat` calls, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times)


def parity_case(name: str, run) -> dict:
    from parity import assert_parity, max_error

    op, ref, gold = run()
    row = {"case": name, "op_error": max_error(op, gold), "reference_error": max_error(ref, gold)}
    try:
        assert_parity(op, ref, gold)
    except AssertionError as exc:
        return {**row, "ok": False, "why": str(exc)}
    return {**row, "ok": True}


def moe_parity(kernels: dict) -> list[dict]:
    from kernel_cases import make_moe_case

    rows = []
    for (tokens, hidden, inter), pattern, map_name, (dname, dtype), strided in _grid(
        MOE_SHAPES, MOE_PATTERNS, MOE_MAPS, DTYPES.items(), (False, True)
    ):
        args = [
            a.to(DEVICE) if a is not None else None
            for a in make_moe_case(tokens, hidden, inter, pattern, map_name, dtype, strided)
        ]

        def run(args=args):
            x, w13, w2, weights, ids, emap = args
            gold = kernels["moe_ref"].fused_moe(x.double(), w13.double(), w2.double(), weights.double(), ids, emap)
            return kernels["moe"].fused_moe(*args), kernels["moe_ref"].fused_moe(*args), gold

        layout = "strided" if strided else "contiguous"
        rows.append(parity_case(f"moe {tokens}x{hidden}x{inter} {pattern} {map_name} {dname} {layout}", run))
    return rows


def int8_parity(kernels: dict) -> list[dict]:
    from kernel_cases import make_int8_case

    rows = []
    for (tokens, k, n), (dname, dtype), strided, bias in _grid(
        INT8_SHAPES, DTYPES.items(), (False, True), (False, True)
    ):
        args = [a.to(DEVICE) if a is not None else None for a in make_int8_case(tokens, k, n, dtype, strided, bias)]

        def run(args=args):
            x, q, s, b = args
            gold = kernels["int8_ref"].linear_w8a16(x.double(), q, s.double(), None if b is None else b.double())
            return kernels["int8"].linear_w8a16(*args), kernels["int8_ref"].linear_w8a16(*args), gold

        layout = "strided" if strided else "contiguous"
        rows.append(parity_case(f"int8 {tokens}x{k}x{n} {dname} {layout}{' bias' if bias else ''}", run))
    return rows


def _grid(*axes):
    import itertools

    return list(itertools.product(*axes))


def torch_grouped_moe(x, w13, w2, weights, ids, expert_map=None, activation="silu"):
    """The PyTorch baseline: for each local expert, gather its tokens, two cuBLAS GEMMs, scatter-add."""
    from shardline_kernels.moe.activation import gated

    local_ids = ids.long() if expert_map is None else expert_map.long()[ids.long()]
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for e in range(w13.shape[0]):
        token, slot = (local_ids == e).nonzero(as_tuple=True)
        if token.numel():
            h = gated(x[token] @ w13[e].t(), activation).to(x.dtype)
            out.index_add_(0, token, (h @ w2[e].t()).float() * weights[token, slot, None])
    return out.to(x.dtype)


def moe_bench(kernels: dict) -> list[dict]:
    rows = []
    for name, experts, top_k, hidden, inter in MOE_LAYERS:
        gen = torch.Generator(device="cuda").manual_seed(0)
        w13 = torch.randn(experts, 2 * inter, hidden, device="cuda", generator=gen).div_(hidden**0.5).bfloat16()
        w2 = torch.randn(experts, hidden, inter, device="cuda", generator=gen).div_(inter**0.5).bfloat16()
        for tokens in MOE_TOKENS:
            x = torch.randn(tokens, hidden, device="cuda", generator=gen).bfloat16()
            weights, ids = torch.randn(tokens, experts, device="cuda", generator=gen).softmax(-1).topk(top_k, dim=-1)
            args = (x, w13, w2, weights.float().contiguous(), ids.int().contiguous())
            differ = (kernels["moe"].fused_moe(*args).float() - torch_grouped_moe(*args).float()).abs().max()
            ours = cuda_seconds(lambda args=args: kernels["moe"].fused_moe(*args))
            base = cuda_seconds(lambda args=args: torch_grouped_moe(*args))
            timing = {"triton_us": ours * 1e6, "torch_us": base * 1e6, "triton_vs_torch": base / ours}
            rows.append({"layer": name, "tokens": tokens, "dtype": "bf16", **timing, "max_diff": differ.item()})
        del w13, w2
    return rows


def copy_bandwidth_gbs() -> float:
    src = torch.ones(ROTATE_BYTES // 4, device="cuda")
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / cuda_seconds(lambda: dst.copy_(src), repeat=10) / 1e9


def int8_bench(kernels: dict) -> list[dict]:
    from shardline_kernels.int8.quantize import quantize_per_channel

    bandwidth, rows = copy_bandwidth_gbs(), []
    for tokens, k, n in INT8_BENCH_SHAPES:
        dense = torch.randn(n, k, device="cuda").div_(k**0.5)
        q, s = quantize_per_channel(dense)
        x, dense = torch.randn(tokens, k, device="cuda").bfloat16(), dense.bfloat16()
        int8 = machine.cycling(kernels["int8"].linear_w8a16, machine.rotating((x, q, s), ROTATE_BYTES))
        bf16 = machine.cycling(F.linear, machine.rotating((x, dense), ROTATE_BYTES))
        t = {
            "int8_triton": cuda_seconds(int8),
            "bf16_cublas": cuda_seconds(bf16),
            "reference": cuda_seconds(lambda x=x, q=q, s=s: kernels["int8_ref"].linear_w8a16(x, q, s)),
        }
        weight_gbs = (q.numel() + s.numel() * 4) / t["int8_triton"] / 1e9
        speed = {"int8_vs_bf16": t["bf16_cublas"] / t["int8_triton"], "weight_gbs": weight_gbs}
        timing = {f"{key}_us": v * 1e6 for key, v in t.items()}
        rows.append({"tokens": tokens, "k": k, "n": n, **timing, **speed, "of_copy_bandwidth": weight_gbs / bandwidth})
        torch.cuda.empty_cache()
    return rows


def describe_gpu() -> dict:
    import triton

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the JSON results")
    parser.add_argument("--no-bench", action="store_true", help="parity only")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing checked", file=sys.stderr)
        return NO_CUDA_STATUS
    kernels = load_kernels()
    parity = moe_parity(kernels) + int8_parity(kernels)
    failed = [row for row in parity if not row["ok"]]
    results = {"machine": describe_gpu(), "parity": parity, "moe": [], "int8": []}
    if not args.no_bench:
        results["moe"], results["int8"] = moe_bench(kernels), int8_bench(kernels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    _report(results, failed, args.out)
    return 1 if failed else 0


def _report(results: dict, failed: list[dict], out: Path) -> None:
    print(results["machine"])
    print(f"parity: {len(results['parity']) - len(failed)} of {len(results['parity'])} cases pass")
    for row in failed:
        print(f"FAILED {row['case']}: {row['why']}")
    if results["moe"]:
        columns = ["layer", "tokens", "dtype", "triton_us", "torch_us", "triton_vs_torch", "max_diff"]
        print(machine.table(results["moe"], columns))
    if results["int8"]:
        columns = ["tokens", "k", "n", "int8_triton_us", "bf16_cublas_us", "reference_us", "int8_vs_bf16"]
        print(machine.table(results["int8"], columns + ["weight_gbs", "of_copy_bandwidth"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
