"""End-to-end TTFT through the router for 8k-token prompts, with and without compression.

Deploys deployments/bench-policies.yaml and streams the same seeded haystack
prompts (8k tokens of the kv tokenizer) to kv-large over gRPC, interleaving
policy `none` with `extractive` and `truncate_middle` at 4x, so all arms see
the same machine state. TTFT = request sent -> first chunk with a token, so the
compressor's own time (in the router) is included. Writes
bench/results/compression-e2e.json and .png.

    .venv/bin/python bench/compression_e2e.py      # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from compression import haystack  # noqa: E402
from shardline.client import Client  # noqa: E402
from shardline.policies.compression import EXTRACTIVE, NONE, TRUNCATE_MIDDLE  # noqa: E402
from shardline.v1 import inference_pb2 as pb  # noqa: E402
from stack import ROOT, deployed  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SPEC = ROOT / "deployments" / "bench-policies.yaml"
ARMS = (NONE, EXTRACTIVE, TRUNCATE_MIDDLE)


def ttft(client: Client, prompt: str, policy: str) -> tuple[float, pb.GenerateChunk]:
    options = pb.CompressionOptions(policy=policy, target_ratio=4.0)
    start = time.perf_counter()
    first, last = None, None
    for chunk in client.stream("kv-large", prompt, timeout=300, max_tokens=8, temperature=0.0, compression=options):
        if first is None and chunk.token_ids:
            first = time.perf_counter() - start
        last = chunk
    return first, last


def run(args) -> dict:
    rng = random.Random(args.seed)
    prompts = [haystack(rng, args.tokens, 8, i / max(1, args.prompts - 1), "random")[0] for i in range(args.prompts)]
    samples = {arm: [] for arm in ARMS}
    reports = {}
    with deployed(SPEC) as target, Client(target) as client:
        for arm in ARMS:  # warm-up: first request per path pays one-time costs
            ttft(client, prompts[0], arm)
        for prompt in prompts:
            for arm in ARMS:
                seconds, last = ttft(client, prompt, arm)
                samples[arm].append(seconds * 1000)
                reports[arm] = last.report.compression
    rows = {
        arm: {
            "ttft_p50_ms": round(statistics.median(v), 1),
            "ttft_mean_ms": round(statistics.mean(v), 1),
            "sent_prompt_tokens": reports[arm].sent_prompt_tokens,
            "original_prompt_tokens": reports[arm].original_prompt_tokens,
        }
        for arm, v in samples.items()
    }
    for arm in ARMS:
        rows[arm]["speedup_vs_none"] = round(rows[NONE]["ttft_p50_ms"] / rows[arm]["ttft_p50_ms"], 2)
    return {"config": vars(args), "arms": rows, "samples_ms": samples}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    arms = result["arms"]
    ax.bar(list(arms), [a["ttft_p50_ms"] for a in arms.values()])
    ax.set(ylabel="TTFT p50 (ms)", title=f"kv-large, {result['config']['tokens']}-token prompts, 4x")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8000)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(args)
    print(f"{'policy':<16}{'TTFT p50 ms':>12}{'sent tokens':>13}{'speedup':>9}")
    for arm, row in result["arms"].items():
        print(f"{arm:<16}{row['ttft_p50_ms']:>12}{row['sent_prompt_tokens']:>13}{row['speedup_vs_none']:>9}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compression-e2e.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / "compression-e2e.png")


if __name__ == "__main__":
    main()
