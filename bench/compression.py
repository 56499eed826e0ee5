"""Compression benchmark: policies x target ratios on a seeded needle-in-a-haystack set.

Each item is filler text with `--needles` key-value facts at depths spread over
0-100%, 2k-16k tokens (the served kv tokenizer), and a question about one of
them. For every policy and ratio 2/4/8/16 it reports the achieved ratio, needle
retention (the asked fact's sentence survives verbatim), answer-span retention
(the answer digits survive anywhere), and the compressor's latency per 1k prompt
tokens. `self_information` is scored with the cheapest tier (kv-small) run
in-process with transformers: the same weights the engine serves; its scoring
prefill is timed apart from the compressor. Writes
bench/results/compression-<filler>.json and .png.

    .venv/bin/python bench/compression.py                      # ~3 min on 2 cores
    .venv/bin/python bench/compression.py --filler repetitive
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from shardline.models import tasks
from shardline.policies.compression import EXTRACTIVE, SELF_INFORMATION, TRUNCATE_MIDDLE, Options, Scorers, compress
from shardline.router.embedder import minilm_embed
from shardline.router.scorers import token_counter

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCORER = ROOT / "models" / "trained" / "kv-small"
POLICIES = (TRUNCATE_MIDDLE, EXTRACTIVE, SELF_INFORMATION)
RATIOS = (2, 4, 8, 16)


def haystack(rng: random.Random, tokens: int, needles: int, depth: float, filler_kind: str) -> tuple[str, str, str]:
    """(prompt, asked needle sentence, answer): the asked needle sits at `depth`.

    `random` filler draws every word at random (what the tiers were trained on);
    `repetitive` filler repeats a dozen fixed sentences, like boilerplate."""
    keys = rng.sample(tasks.KEYS, needles)
    facts = [f"The code of {k} is {' '.join(rng.choice(tasks.DIGITS) for _ in range(4))} ." for k in keys]
    stock = [tasks._filler(random.Random(i)) for i in range(12)]
    filler = []
    while sum(len(s.split()) for s in filler) < tokens - needles * 9 - 12:
        filler.append(tasks._filler(rng) if filler_kind == "random" else rng.choice(stock))
    sentences = filler[:]
    for fact in facts[1:]:
        sentences.insert(rng.randrange(len(sentences) + 1), fact)
    sentences.insert(round(depth * len(sentences)), facts[0])
    answer = facts[0].split(" is ")[1].rstrip(" .")
    prompt = " ".join(sentences) + f" Question : what is the code of {keys[0]} ? Answer :"
    return prompt, facts[0], answer


class SelfInformation:
    """A causal LM's per-token NLL over a prompt, with character spans (as the engine
    returns them); kv-small unless another model directory is given."""

    def __init__(self, path: Path = SCORER):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()

    @torch.inference_mode()
    def __call__(self, prompt: str) -> list[tuple[int, int, float]]:
        enc = self.tokenizer(prompt, return_offsets_mapping=True, return_tensors="pt")
        logits = self.model(enc["input_ids"]).logits[0, :-1]
        nll = torch.nn.functional.cross_entropy(logits, enc["input_ids"][0, 1:], reduction="none")
        spans = enc["offset_mapping"][0, 1:].tolist()
        return [(s, e, float(n)) for (s, e), n in zip(spans, nll) if e > s]


def run(args) -> dict:
    count = token_counter(str(SCORER / "tokenizer.json"))
    scorer = SelfInformation()
    minilm_embed(["warm up"])
    rng = random.Random(args.seed)
    cells = {}
    for length in args.lengths:
        for i in range(args.items):
            prompt, needle, answer = haystack(rng, length, args.needles, i / max(1, args.items - 1), args.filler)
            start = time.perf_counter()
            nll = scorer(prompt)
            score_s = time.perf_counter() - start
            scorers = Scorers(count=count, embed=minilm_embed, token_nll=nll)
            for policy in POLICIES:
                for ratio in RATIOS:
                    options = Options(policy=policy, target_ratio=ratio, min_prompt_tokens=0)
                    start = time.perf_counter()
                    out = compress(prompt, options, scorers)
                    seconds = time.perf_counter() - start
                    cell = cells.setdefault((policy, ratio, length), [])
                    cell.append(
                        {
                            "ratio": out.original_tokens / out.sent_tokens,
                            "needle": needle in out.text,
                            "answer": answer in out.text.split("Question :")[0],
                            "ms_per_1k": seconds * 1000 / (out.original_tokens / 1000),
                            "scoring_ms_per_1k": score_s * 1000 / (out.original_tokens / 1000),
                        }
                    )
    return summarise(cells)


def summarise(cells) -> dict:
    rows = []
    for (policy, ratio, length), runs in sorted(cells.items()):
        rows.append(
            {
                "policy": policy,
                "target_ratio": ratio,
                "tokens": length,
                "items": len(runs),
                "achieved_ratio": round(statistics.mean(r["ratio"] for r in runs), 2),
                "needle_retention": round(statistics.mean(r["needle"] for r in runs), 3),
                "answer_retention": round(statistics.mean(r["answer"] for r in runs), 3),
                "ms_per_1k_tokens": round(statistics.median(r["ms_per_1k"] for r in runs), 2),
                "scoring_prefill_ms_per_1k": round(statistics.median(r["scoring_ms_per_1k"] for r in runs), 2)
                if policy == SELF_INFORMATION
                else 0.0,
            }
        )
    return {"rows": rows, "by_policy_ratio": by_policy_ratio(rows)}


def by_policy_ratio(rows) -> list[dict]:
    out = []
    for policy in POLICIES:
        for ratio in RATIOS:
            cell = [r for r in rows if r["policy"] == policy and r["target_ratio"] == ratio]
            n = sum(r["items"] for r in cell)
            out.append(
                {
                    "policy": policy,
                    "target_ratio": ratio,
                    "achieved_ratio": round(sum(r["achieved_ratio"] * r["items"] for r in cell) / n, 2),
                    "needle_retention": round(sum(r["needle_retention"] * r["items"] for r in cell) / n, 3),
                    "answer_retention": round(sum(r["answer_retention"] * r["items"] for r in cell) / n, 3),
                    "ms_per_1k_tokens": round(statistics.median(r["ms_per_1k_tokens"] for r in cell), 2),
                }
            )
    return out


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for policy in POLICIES:
        rows = [r for r in summary["by_policy_ratio"] if r["policy"] == policy]
        ax.plot([r["target_ratio"] for r in rows], [r["needle_retention"] for r in rows], marker="o", label=policy)
    ax.set(
        xscale="log",
        xlabel="target ratio (x)",
        ylabel="needle retention",
        ylim=(0, 1.05),
        title="Compression: needle retention vs ratio",
    )
    ax.set_xticks(RATIOS, [str(r) for r in RATIOS])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2000, 4000, 8000, 16000])
    parser.add_argument("--items", type=int, default=10, help="items per length (depths 0..100%%)")
    parser.add_argument("--needles", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filler", choices=["random", "repetitive"], default="random")
    args = parser.parse_args()
    summary = {"config": vars(args), **run(args), "torch_threads": torch.get_num_threads()}
    print(f"{'policy':<18}{'ratio':>6}{'achieved':>10}{'needle':>8}{'answer':>8}{'ms/1k':>8}")
    for r in summary["by_policy_ratio"]:
        print(
            f"{r['policy']:<18}{r['target_ratio']:>6}{r['achieved_ratio']:>10}{r['needle_retention']:>8}"
            f"{r['answer_retention']:>8}{r['ms_per_1k_tokens']:>8}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"compression-{args.filler}.json").write_text(json.dumps(summary, indent=2))
    plot(summary, RESULTS / f"compression-{args.filler}.png")


if __name__ == "__main__":
    main()
