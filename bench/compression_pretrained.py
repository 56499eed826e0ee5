"""Compression on a real model: needle kept, answer accuracy and TTFT, per policy x ratio x length.

Long-context fact QA over real prose (`models/questions.needle_in_prose`: Python's
language reference with one stated fact at depth 10/50/90%, then a question about
it), 1k-8k prompt tokens of SmolLM2-135M-Instruct's tokenizer. Every item is sent
through the real stack (deployments/bench-compression.yaml: router + vLLM CPU) once
per arm, the arms interleaved item by item so machine drift hits them alike:
`none`, then `truncate_middle`, `extractive` and `self_information` at 2x, 4x, 8x.
The router compresses (self_information scores the prompt with the model's own
`prompt_logprobs`, an extra prefill it pays) and SmolLM2 answers greedily.

- accuracy: the answer's first number equals the fact's code (`questions.score`);
- needle kept: the fact sentence survives compression verbatim. The router does not
  return the text it sent, so the bench compresses the same prompt with the same
  policy code, tokenizer and MiniLM; self_information's scores there come from the
  same SmolLM2 weights run in fp32 with transformers (the engine serves bf16), so its
  needle figure can differ slightly from what the router kept;
- TTFT: request sent -> first token, the router's compression included.

Writes bench/results/compression-pretrained.json and .png.

    .venv/bin/python bench/compression_pretrained.py                  # ~15 min on 2 cores
    .venv/bin/python bench/compression_pretrained.py --items 2 --lengths 1000 8000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import grpc  # noqa: E402

from compression import SelfInformation  # noqa: E402
from shardline.client import Client  # noqa: E402
from shardline.models import questions  # noqa: E402
from shardline.policies.compression import (  # noqa: E402
    EXTRACTIVE,
    NONE,
    SELF_INFORMATION,
    TRUNCATE_MIDDLE,
    Options,
    Scorers,
    compress,
)
from shardline.router.embedder import minilm_embed  # noqa: E402
from shardline.router.scorers import token_counter  # noqa: E402
from shardline.v1 import inference_pb2 as pb  # noqa: E402
from stack import ROOT, deployed  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SPEC = ROOT / "deployments" / "bench-compression.yaml"
MODEL = "smollm2-135m-instruct"
MODEL_DIR = ROOT / ".cache" / "models" / MODEL
POLICIES = (TRUNCATE_MIDDLE, EXTRACTIVE, SELF_INFORMATION)
RATIOS = (2, 4, 8)
ARMS = ((NONE, 1),) + tuple((p, r) for p in POLICIES for r in RATIOS)
DEPTHS = (0.1, 0.5, 0.9)


def question_chars(prompt: str) -> int:
    """The trailing question block, always kept (the router would detect it too)."""
    return len(prompt) - prompt.rindex("\n\nQuestion:")


def ask(client: Client, prompt: str, policy: str, ratio: float, max_tokens: int) -> dict:
    options = pb.CompressionOptions(policy=policy, target_ratio=ratio, question_chars=question_chars(prompt))
    start, first, text, last = time.perf_counter(), None, [], None
    for chunk in client.stream(MODEL, prompt, timeout=600, max_tokens=max_tokens, temperature=0.0, compression=options):
        if first is None and chunk.token_ids:
            first = time.perf_counter() - start
        text.append(chunk.text)
        last = chunk
    report = last.report.compression
    return {
        "text": "".join(text),
        "ttft_ms": round(first * 1000, 1),
        "original_tokens": report.original_prompt_tokens,
        "sent_tokens": report.sent_prompt_tokens,
        "skipped": report.skipped,
    }


def needle_kept(prompt: str, fact: str, policy: str, ratio: float, scorers: Scorers) -> bool:
    if policy == NONE:
        return True
    options = Options(policy=policy, target_ratio=ratio, min_prompt_tokens=0, question_chars=question_chars(prompt))
    return fact in compress(prompt, options, scorers).text


def record(args, rows: list[dict]) -> None:
    """Appends one row per (item, arm) to `rows` as it goes (a failure keeps them)."""
    count = token_counter(str(MODEL_DIR / "tokenizer.json"))
    scorer = SelfInformation(MODEL_DIR)
    items = [
        (length, questions.needle_within(args.seed + 1000 * length + i, length, DEPTHS[i % len(DEPTHS)], count))
        for length in args.lengths
        for i in range(args.items)
    ]
    with deployed(SPEC) as target, Client(target) as client:
        for policy in (NONE, *POLICIES):  # warm-up: one-time costs (MiniLM's load, the first logprobs)
            ask(client, items[0][1].prompt, policy, 2, args.max_tokens)
        for k, (length, it) in enumerate(items):
            fact = next(s for s in it.prompt.split(". ") if "secret code of the" in s and it.answer in s)
            scorers = Scorers(count=count, embed=minilm_embed, token_nll=scorer(it.prompt))
            arms = ARMS[k % len(ARMS) :] + ARMS[: k % len(ARMS)]  # rotate which arm goes first
            for policy, ratio in arms:
                reply = ask(client, it.prompt, policy, ratio, args.max_tokens)
                row = {"length": length, "item": k, "depth": it.depth, "policy": policy, "ratio": ratio, **reply}
                row["right"] = questions.score(it, reply["text"])
                row["needle_kept"] = needle_kept(it.prompt, fact, policy, ratio, scorers)
                rows.append(row)
                print(
                    f"{length:>6} {k:>3} {policy:<17}{ratio:>3} right={row['right']!s:<5} "
                    f"kept={row['needle_kept']!s:<5} ttft={row['ttft_ms']:>8} ms {reply['text'][:30]!r}",
                    flush=True,
                )


def summarise(rows: list[dict], lengths: list[int]) -> dict:
    def cell(policy, ratio, length=None):
        return [r for r in rows if r["policy"] == policy and r["ratio"] == ratio and length in (None, r["length"])]

    none_accuracy = statistics.mean(r["right"] for r in cell(NONE, 1))
    table = []
    for policy, ratio in ARMS:
        runs = cell(policy, ratio)
        accuracy = statistics.mean(r["right"] for r in runs)
        longest = cell(policy, ratio, max(lengths))
        table.append(
            {
                "policy": policy,
                "target_ratio": ratio,
                "items": len(runs),
                "achieved_ratio": round(statistics.mean(r["original_tokens"] / r["sent_tokens"] for r in runs), 2),
                "needle_kept": round(statistics.mean(r["needle_kept"] for r in runs), 3),
                "accuracy": round(accuracy, 3),
                "accuracy_delta_vs_none": round(accuracy - none_accuracy, 3),
                "accuracy_by_length": {
                    str(n): round(statistics.mean(r["right"] for r in cell(policy, ratio, n)), 3) for n in lengths
                },
                f"ttft_p50_ms_at_{max(lengths)}": round(statistics.median(r["ttft_ms"] for r in longest), 1),
            }
        )
    key = f"ttft_p50_ms_at_{max(lengths)}"
    for row in table:
        row[f"ttft_speedup_at_{max(lengths)}"] = round(table[0][key] / row[key], 2)
    return {"none_accuracy": round(none_accuracy, 3), "table": table}


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc, kept) = plt.subplots(1, 2, figsize=(9, 3.6))
    for policy in POLICIES:
        rows = [r for r in summary["table"] if r["policy"] == policy]
        ratios = [r["target_ratio"] for r in rows]
        acc.plot(ratios, [r["accuracy"] for r in rows], marker="o", label=policy)
        kept.plot(ratios, [r["needle_kept"] for r in rows], marker="o", label=policy)
    acc.axhline(summary["none_accuracy"], color="grey", linestyle="--", label="uncompressed")
    acc.set(xscale="log", xlabel="target ratio (x)", ylabel="answer accuracy", ylim=(0, 1.05), title="SmolLM2 answers")
    kept.set(xscale="log", xlabel="target ratio (x)", ylabel="needle kept", ylim=(0, 1.05), title="Fact sentence kept")
    for ax in (acc, kept):
        ax.set_xticks(RATIOS, [str(r) for r in RATIOS])
    acc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 2000, 4000, 8000], help="prompt tokens")
    parser.add_argument("--items", type=int, default=6, help="items per length (depths 10/50/90%% in turn)")
    parser.add_argument("--max-tokens", type=int, default=16, help="room for 'The secret code of the X is N'")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows, failure = [], ""
    try:
        record(args, rows)
    except grpc.RpcError as exc:  # keep and report what completed
        failure = f"{exc.code().name}: {exc.details()}"
        print(f"stopped early after {len(rows)} rows: {failure}")
    complete = [r for r in rows if sum(o["item"] == r["item"] for o in rows) == len(ARMS)]
    lengths = sorted({r["length"] for r in complete})
    summary = {"config": vars(args), "failure": failure, **summarise(complete, lengths), "rows": rows}
    key = f"ttft_p50_ms_at_{max(lengths)}"
    print(f"\nuncompressed accuracy {summary['none_accuracy']}")
    print(f"{'policy':<18}{'ratio':>6}{'achieved':>9}{'kept':>7}{'acc':>7}{'delta':>7}{key:>22}{'speedup':>9}")
    for r in summary["table"]:
        print(
            f"{r['policy']:<18}{r['target_ratio']:>6}{r['achieved_ratio']:>9}{r['needle_kept']:>7}{r['accuracy']:>7}"
            f"{r['accuracy_delta_vs_none']:>7}{r[key]:>22}{r[key.replace('p50_ms', 'speedup')]:>9}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compression-pretrained.json").write_text(json.dumps(summary, indent=2))
    plot(summary, RESULTS / "compression-pretrained.png")


if __name__ == "__main__":
    main()
