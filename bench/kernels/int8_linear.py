"""Int8 weight-only linear (W8A16) vs bf16/fp32 dense linear at decode shapes.

For each (tokens, K, N): our CPU kernel (`shardline_kernels.int8.cpu`) with bf16
and fp32 activations, PyTorch's dense `F.linear` in bf16 and fp32, and the plain
reference (dequantize + matmul). Reports the speedup over bf16, the weight bytes
saved, and the GB/s the int8 kernel reaches (int8 weight bytes / time) as a
fraction of the memory bandwidth measured in the same run (a large copy). Every
timed call reads a different copy of the weights (1 GiB in all, more than the
last-level cache), so weights come from DRAM as in a real decode step.
Prints a table and writes bench/results/kernels-int8.json.

    .venv/bin/python bench/kernels/int8_linear.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import machine  # noqa: E402

from shardline_kernels.int8 import cpu, reference  # noqa: E402
from shardline_kernels.int8.quantize import quantize_per_channel  # noqa: E402

SHAPES = [(1, 4096, 4096), (1, 4096, 11008), (1, 11008, 4096), (4, 4096, 4096), (16, 4096, 4096)]


def bench_shape(tokens: int, k: int, n: int, bandwidth: float, repeat: int) -> dict:
    weight = torch.randn(n, k) / k**0.5
    x = torch.randn(tokens, k)
    xb = x.bfloat16()
    int8 = machine.rotating(quantize_per_channel(weight))
    t = {
        "int8_bf16act": machine.best_seconds(machine.cycling(lambda q, s: cpu.linear_w8a16(xb, q, s), int8), repeat),
        "int8_fp32act": machine.best_seconds(
            machine.cycling(lambda q, s: cpu.linear_w8a16(x, q, s), int8), max(3, repeat // 4)
        ),
        "reference_bf16": machine.best_seconds(machine.cycling(lambda q, s: reference.linear_w8a16(xb, q, s), int8), 3),
    }
    del int8
    bf16 = machine.rotating((weight.bfloat16(),))
    t["dense_bf16"] = machine.best_seconds(machine.cycling(lambda w: F.linear(xb, w), bf16), repeat)
    del bf16
    fp32 = machine.rotating((weight,))
    t["dense_fp32"] = machine.best_seconds(machine.cycling(lambda w: F.linear(x, w), fp32), repeat)
    int8_gbs = (n * k + 4 * n) / t["int8_bf16act"] / 1e9
    return {
        "shape": f"{tokens}x{k}x{n}",
        **{f"{name}_us": seconds * 1e6 for name, seconds in t.items()},
        "speedup_vs_bf16": t["dense_bf16"] / t["int8_bf16act"],
        "speedup_vs_fp32": t["dense_fp32"] / t["int8_bf16act"],
        "weight_mib_bf16": n * k * 2 / 2**20,
        "weight_mib_int8": (n * k + 4 * n) / 2**20,
        "int8_gbs": int8_gbs,
        "bw_fraction": int8_gbs / bandwidth,
        "bf16_bw_fraction": n * k * 2 / t["dense_bf16"] / 1e9 / bandwidth,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bandwidth = machine.copy_bandwidth_gbs()
    rows = [bench_shape(*shape, bandwidth, args.repeat) for shape in SHAPES]
    print(f"memory bandwidth (copy): {bandwidth:.1f} GB/s; {machine.describe()}")
    print(
        machine.table(
            rows,
            [
                "shape",
                "int8_bf16act_us",
                "int8_fp32act_us",
                "dense_bf16_us",
                "dense_fp32_us",
                "reference_bf16_us",
                "speedup_vs_bf16",
                "speedup_vs_fp32",
                "weight_mib_bf16",
                "weight_mib_int8",
                "int8_gbs",
                "bw_fraction",
                "bf16_bw_fraction",
            ],
        )
    )
    path = machine.write("kernels-int8", {"machine": machine.describe(), "bandwidth_gbs": bandwidth, "results": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
