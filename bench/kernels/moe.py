"""Fused MoE on CPU: our kernel vs vLLM-CPU's kernel vs the reference loop.

Kernel phase: one MoE layer (all experts local, i.e. TP without EP, the only
setting where vLLM's own CPU kernel is correct) at decode (1-16 tokens) and
prefill (512 tokens) shapes, bf16 and fp32; vLLM's kernel gets its prepacked
weights and the ISA vLLM would pick (AMX for bf16 where present), ours the
weights `experts.prepack` makes at load, as in vLLM. Also timed: ours on the
plain weights (`cpu.fused_moe`, no prepack) and our EP=2 rank (half the experts,
remote tokens skipped). These arms take turns, round by round; the slow
reference loop is timed after them.
End-to-end phase (--e2e): tokens/s of the tiny Mixtral (models/trained/kv-moe)
through vLLM offline, TP=2 with vLLM's MoE vs TP=2 (+ EP=2) with ours, one
engine at a time.
Prints tables and writes bench/results/kernels-moe.json (with the command and
the machine's load average at the start and the end).

    .venv/bin/python bench/kernels/moe.py [--e2e]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import machine  # noqa: E402

from shardline_kernels.moe import cpu, experts, reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# (name, experts, top-k, hidden, intermediate): the tiny Mixtral's layer and a
# Mixtral-8x7B layer scaled down 4x in both dimensions.
LAYERS = [("tiny-mixtral", 4, 2, 128, 512), ("mixtral-quarter", 8, 2, 1024, 3584)]
TOKENS = [1, 4, 16, 512]


def make_layer(experts, top_k, hidden, inter, tokens, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, hidden, generator=gen).to(dtype)
    w13 = (torch.randn(experts, 2 * inter, hidden, generator=gen) / hidden**0.5).to(dtype)
    w2 = (torch.randn(experts, hidden, inter, generator=gen) / inter**0.5).to(dtype)
    weights, ids = torch.randn(tokens, experts, generator=gen).softmax(-1).topk(top_k, dim=-1)
    return x, w13, w2, weights.float().contiguous(), ids.int().contiguous()


def vllm_moe(x, w13, w2, weights, ids):
    """vLLM-CPU's fused MoE call, as CPUUnquantizedExperts makes it."""
    from vllm._custom_ops import cpu_fused_moe, cpu_prepack_moe_weight

    isa = "amx" if x.dtype == torch.bfloat16 and torch.cpu._is_amx_tile_supported() else "vec"
    w13p, w2p = cpu_prepack_moe_weight(w13, isa), cpu_prepack_moe_weight(w2, isa)
    out = torch.empty_like(x)

    def run():
        cpu_fused_moe(out, x, w13p, w2p, None, None, weights, ids, "silu", isa)
        return out

    return run, isa


def ep_rank0(x, w13, w2, weights, ids):
    local = w13.shape[0] // 2
    expert_map = torch.tensor([e if e < local else -1 for e in range(w13.shape[0])], dtype=torch.int32)
    packed = experts.prepack(w13[:local], w2[:local])
    return lambda: cpu.fused_moe_experts(x, packed, weights, ids, expert_map)


def bench_case(layer, tokens, dtype, repeat):
    name, num_experts, top_k, hidden, inter = layer
    args = make_layer(num_experts, top_k, hidden, inter, tokens, dtype)
    x, w13, w2, weights, ids = args
    vllm_run, isa = vllm_moe(*args)
    packed = experts.prepack(w13, w2)  # as vLLM's load does
    arms = {
        "ours": lambda: cpu.fused_moe_experts(x, packed, weights, ids),
        "vllm": vllm_run,
        "ours_ep_rank": ep_rank0(*args),
        "ours_plain": lambda: cpu.fused_moe(*args),
    }
    torch.testing.assert_close(arms["ours"](), vllm_run(), rtol=0.05, atol=0.05)
    reps = repeat if tokens < 512 else max(2, repeat // 10)
    t = machine.interleaved_best(arms, rounds=3, repeat=reps)
    t["reference"] = machine.best_seconds(lambda: reference.fused_moe(*args), max(2, reps // 5), warmup=1)
    return {
        "layer": name,
        "tokens": tokens,
        "dtype": str(dtype).removeprefix("torch."),
        "vllm_isa": isa,
        "weights_as": _layout(packed),
        **{f"{k}_us": v * 1e6 for k, v in t.items()},
        "ours_vs_vllm": t["vllm"] / t["ours"],
        "ours_vs_plain": t["ours_plain"] / t["ours"],
        "ours_vs_reference": t["reference"] / t["ours"],
    }


def _layout(packed: experts.Experts) -> str:
    layout = "onednn-blocked" if isinstance(packed, experts.PackedExperts) else "plain"
    return f"{layout} {str(packed.dtype).removeprefix('torch.')}"


E2E_PROBE = """
import json, sys, time
def main():
    from vllm import LLM, SamplingParams
    llm = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=512,
              tensor_parallel_size=2, enable_expert_parallel=sys.argv[2] == "ep", gpu_memory_utilization=0.3)
    prompts = [{"prompt": f"prompt number {i} says"} for i in range(16)]
    params = SamplingParams(max_tokens=64, temperature=0, ignore_eos=True)
    llm.generate(prompts[:2], params)
    start = time.perf_counter()
    outs = llm.generate(prompts, params)
    seconds = time.perf_counter() - start
    print("RESULT", json.dumps({"tokens": sum(len(o.outputs[0].token_ids) for o in outs), "seconds": seconds}))
if __name__ == "__main__":
    main()
"""


def bench_e2e(mode: str, kernels: str) -> dict:
    env = {
        **os.environ,
        "SHARDLINE_KERNELS": kernels,
        "VLLM_CPU_OMP_THREADS_BIND": "0|1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    model = str(ROOT / "models" / "trained" / "kv-moe")
    run = subprocess.run(
        [sys.executable, "-c", E2E_PROBE, model, mode], capture_output=True, text=True, env=env, timeout=600
    )
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        return {"config": f"TP=2 {mode} {kernels or 'moe=vllm'}", "error": run.stderr[-500:]}
    result = json.loads(line[7:])
    return {
        "config": f"TP=2{' + EP=2' if mode == 'ep' else ''}, {kernels or 'moe=vllm'}",
        **result,
        "tokens_per_s": result["tokens"] / result["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one TP worker's core)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--e2e", action="store_true", help="also run the end-to-end tiny Mixtral engines")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    at_start = machine.describe()
    rows = [
        bench_case(layer, tokens, dtype, args.repeat)
        for layer in LAYERS
        for dtype in (torch.bfloat16, torch.float32)
        for tokens in TOKENS
    ]
    print(at_start)
    print(
        machine.table(
            rows,
            [
                "layer",
                "dtype",
                "tokens",
                "vllm_isa",
                "weights_as",
                "ours_us",
                "vllm_us",
                "ours_plain_us",
                "ours_ep_rank_us",
                "reference_us",
                "ours_vs_vllm",
                "ours_vs_plain",
            ],
        )
    )
    e2e = [bench_e2e("tp", ""), bench_e2e("tp", "moe=shardline"), bench_e2e("ep", "moe=shardline")] if args.e2e else []
    if e2e:
        print(machine.table(e2e, ["config", "tokens", "seconds", "tokens_per_s", "error"]))
    command = " ".join([os.path.relpath(sys.executable), *sys.argv])
    at_end = machine.describe()
    print(f"load average (1, 5, 15 min): start {at_start['load_avg_1_5_15']}, end {at_end['load_avg_1_5_15']}")
    result = {"command": command, "machine": at_start, "load_avg_at_end": at_end["load_avg_1_5_15"], "kernel": rows}
    path = machine.write("kernels-moe", {**result, "e2e": e2e})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
