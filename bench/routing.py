"""Routing benchmark: which replica gets each request, on two replicas of one model.

Arms (the model's routing, everything else equal):
- `default`: Serve's power of two choices (`routing.policy: default`);
- `prefix_affinity`: ours (policies/routing/, `routing.policy: prefix_affinity`);
- `ray_prefix`: Ray Serve LLM's `PrefixCacheAffinityRouter` as shipped in Ray 2.60
  (its defaults), set on our LLM deployment in place of ours. It reads the call's
  `prompt` attribute, which our `GenerationRequest` has, so it routes our calls
  unchanged; it does not publish the replica set (replica_set.py), so the router's
  readiness falls back to polling `serve.status()` (it only gates admission).

Workloads, fresh random text per arm (no arm inherits another's cache):
- `shared`: groups with a long system prompt each; several conversations per group
  re-send their history turn after turn (turns of a conversation in sequence,
  conversations concurrent);
- `unique`: no two prompts share a block;
- `hot`: one long prefix, a burst of requests at once.

Per arm and workload: TTFT p50/p99 at the client (streaming), completion tokens/s,
the prefix-cache hit rate from vLLM's own counters (hits / queries, in tokens,
summed over the replicas: serve/replica_stats.py), the ideal hit rate (a single
unbounded cache that saw every earlier request of the run), and the load spread
(requests each replica started, max over mean).

The arms run one after another, each on a freshly deployed app: three apps at once
(six engines) do not fit the memory of the 2-core reference machine, and switching
the policy of a deployed app restarts its engines anyway (the routing section is
part of the replicas' spec). `--rounds 2` runs them A B C C B A against drift.

    .venv/bin/python bench/routing.py --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
RESULTS = ROOT / "bench" / "results"
ARMS = ("default", "prefix_affinity", "ray_prefix")
RAY_PREFIX_ROUTER = "ray.serve.llm.request_router.PrefixCacheAffinityRouter"
DEPLOY_TIMEOUT_S = 900


def spec_for(arm: str, model_path: str, replicas: int, kv_blocks: int | None = None):
    from shardline.spec import validate_spec

    policy = "default" if arm == "ray_prefix" else arm
    engine_args = {"enforce_eager": True, "gpu_memory_utilization": 0.3}
    routing = {"policy": policy}
    if kv_blocks:  # a KV cache that holds fewer groups than the workload has: the cache is the constraint
        engine_args["num_gpu_blocks_override"] = kv_blocks
        if policy == "prefix_affinity":  # as docs/routing.md says: remember about what the engine can hold
            routing["max_blocks_per_replica"] = kv_blocks
    return validate_spec(
        {
            "name": f"routing-{arm.replace('_', '-')}",
            "models": [
                {
                    "name": "m",
                    "path": model_path,
                    "dtype": "float32",
                    "max_model_len": 4096,
                    "replicas": {"min": replicas, "max": replicas},
                    "health": {"period_s": 600, "probe_timeout_s": 30, "timeout_s": 120},
                    "engine_args": engine_args,
                    "routing": routing,
                }
            ],
            "router": {"port": 0},
            "telemetry": {"exporter": "off"},
        }
    )


def unavailable(arm: str) -> str:
    """Why `arm` cannot run here ("" when it can)."""
    if arm != "ray_prefix":
        return ""
    try:  # Ray Serve LLM's package imports pyarrow (its cloud filesystems), not a Shardline dependency
        importlib.import_module(RAY_PREFIX_ROUTER.rsplit(".", 1)[0])
    except ImportError as exc:
        return f"{RAY_PREFIX_ROUTER} does not import: {exc} (pip install 'ray[llm]')"
    return ""


def deploy(arm: str, spec):
    """Deploy `spec`; for `ray_prefix`, with Ray Serve LLM's router on the LLM deployment."""
    from ray.serve.config import RequestRouterConfig

    from shardline.serve import app, lifecycle

    original = app.request_router_config
    if arm == "ray_prefix":
        app.request_router_config = lambda model: RequestRouterConfig(request_router_class=RAY_PREFIX_ROUTER)
    try:
        return lifecycle.deploy(spec, DEPLOY_TIMEOUT_S)
    finally:
        app.request_router_config = original


# workloads


class Words:
    """Random text from the model's own vocabulary (whole words, so prompts tokenize stably)."""

    def __init__(self, tokenizer, seed: int):
        vocab = [w.lstrip("Ġ▁") for w in tokenizer.get_vocab()]
        self.vocab = sorted({w for w in vocab if w.isalpha() and 3 <= len(w) <= 8})
        self.rng = random.Random(seed)

    def __call__(self, n: int) -> str:
        return " ".join(self.rng.choice(self.vocab) for _ in range(n))


def shared_workload(words: Words, args) -> list[tuple[str, list[str]]]:
    """Conversations: (its group's system prompt, the user's text of each turn)."""
    conversations = []
    for _ in range(args.groups):
        system = words(args.prefix_words)
        for _ in range(args.conversations):
            conversations.append((system, [words(args.turn_words) for _ in range(args.turns)]))
    return conversations


async def run_shared(stub, words: Words, args) -> list[dict]:
    """Every conversation is open at once; at most `in_flight` turns run at a time, so
    the groups' prompts come back round after round (as users of a chat service do)
    rather than one conversation finishing before the next starts."""
    records = []
    gate = asyncio.Semaphore(args.in_flight)

    async def conversation(system: str, turns: list[str]) -> None:
        history = system
        for user in turns:
            history += " " + user
            async with gate:
                record = await one(stub, history, args.max_tokens)
            records.append(record)
            history += record["text"]

    await asyncio.gather(*(conversation(system, turns) for system, turns in shared_workload(words, args)))
    return records


async def run_unique(stub, words: Words, args) -> list[dict]:
    prompts = [words(args.prefix_words + args.turn_words) for _ in range(args.burst)]
    return await bounded(stub, prompts, args.max_tokens, args.concurrency)


async def run_hot(stub, words: Words, args) -> list[dict]:
    hot = words(args.prefix_words)
    prompts = [f"{hot} {words(args.turn_words)}" for _ in range(args.burst)]
    return await bounded(stub, prompts, args.max_tokens, len(prompts))


WORKLOADS = {"shared": run_shared, "unique": run_unique, "hot": run_hot}


async def bounded(stub, prompts: list[str], max_tokens: int, concurrency: int) -> list[dict]:
    gate = asyncio.Semaphore(concurrency)

    async def gated(prompt: str) -> dict:
        async with gate:
            return await one(stub, prompt, max_tokens)

    return list(await asyncio.gather(*(gated(p) for p in prompts)))


async def one(stub, prompt: str, max_tokens: int) -> dict:
    from shardline.client import make_request

    start, ttft, text, tokens = time.perf_counter(), None, [], 0
    async for chunk in stub.GenerateStream(make_request("m", prompt, max_tokens=max_tokens, ignore_eos=True)):
        if ttft is None and chunk.token_ids:
            ttft = time.perf_counter() - start
        text.append(chunk.text)
        tokens += len(chunk.token_ids)
    return {"prompt": prompt, "text": "".join(text), "ttft_s": ttft, "tokens": tokens}


# measures


def ideal_hit_rate(records: list[dict], tokenizer, block: int) -> float:
    """Hit rate of one unbounded cache that saw every earlier request (in finishing order)."""
    from shardline.policies.routing.blocks import chain

    seen: set[int] = set()
    hits = queries = 0
    for r in records:
        ids = tokenizer.encode(r["prompt"]).ids
        hashes = chain(ids, block)
        matched = next((i for i, h in enumerate(hashes) if h not in seen), len(hashes))
        hits += min(matched * block, len(ids) - 1)  # vLLM always recomputes the last prompt token
        queries += len(ids)
        seen.update(hashes)
    return hits / queries if queries else 0.0


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def summarize(records, wall_s, before, after, tokenizer, block) -> dict:
    ttft = [r["ttft_s"] for r in records if r["ttft_s"] is not None]
    started = {k: after[k]["started_requests"] - before.get(k, {}).get("started_requests", 0) for k in after}
    hits = sum(after[k]["prefix_cache_hits"] - before.get(k, {}).get("prefix_cache_hits", 0) for k in after)
    queries = sum(after[k]["prefix_cache_queries"] - before.get(k, {}).get("prefix_cache_queries", 0) for k in after)
    mean = sum(started.values()) / max(len(started), 1)
    return {
        "requests": len(records),
        "ttft_p50_ms": 1000 * percentile(ttft, 50),
        "ttft_p99_ms": 1000 * percentile(ttft, 99),
        "tokens_per_s": sum(r["tokens"] for r in records) / wall_s,
        "hit_rate": hits / queries if queries else 0.0,
        "ideal_hit_rate": ideal_hit_rate(records, tokenizer, block),
        "per_replica_started": sorted(started.values(), reverse=True),
        "max_over_mean_load": max(started.values()) / mean if mean else 0.0,
    }


async def run_arm(arm: str, target: str, app_name: str, tokenizer, block: int, args, seed: int) -> dict:
    import grpc

    from shardline.serve.replica_stats import replica_stats
    from shardline.v1 import inference_pb2_grpc as pb_grpc

    out = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceStub(channel)
        for n, name in enumerate(args.workloads.split(",")):
            workload = WORKLOADS[name]
            words = Words(tokenizer, seed * 100 + n)
            before = replica_stats(app_name, "m")
            start = time.perf_counter()
            records = await workload(stub, words, args)
            wall = time.perf_counter() - start
            await asyncio.sleep(1.0)  # the engines' stat loggers catch up
            out[name] = summarize(records, wall, before, replica_stats(app_name, "m"), tokenizer, block)
            print(f"  {arm:16s} {name:7s} {json.dumps({k: _round(v) for k, v in out[name].items()})}", flush=True)
    return out


def _round(value):
    return round(value, 3) if isinstance(value, float) else value


def table(runs: list[dict]) -> str:
    """Every run, workload by workload, arms in run order (round 2 runs them reversed)."""
    columns = ["workload", "arm", "round", "TTFT p50 ms", "TTFT p99 ms", "tokens/s", "hit rate", "ideal"]
    rows = ["| " + " | ".join([*columns, "load max/mean", "per replica"]) + " |", "|" + "---|" * 10]
    for workload in runs[0]["results"]:
        for run in runs:
            r = run["results"][workload]
            rows.append(
                f"| {workload} | {run['arm']} | {run['round']} | {r['ttft_p50_ms']:.0f} | {r['ttft_p99_ms']:.0f} | "
                f"{r['tokens_per_s']:.1f} | {r['hit_rate']:.2f} | {r['ideal_hit_rate']:.2f} | "
                f"{r['max_over_mean_load']:.2f} | {'/'.join(map(str, r['per_replica_started']))} |"
            )
    return "\n".join(rows)


PANELS = (
    ("hit_rate", "prefix-cache hit rate (vLLM)"),
    ("ttft_p50_ms", "TTFT p50, ms"),
    ("max_over_mean_load", "load: max / mean"),
)


def plot(runs: list[dict], path: Path) -> None:
    """One panel per measure; per workload, a bar per run (arm, round); the ideal hit rate as a tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(runs[0]["results"])
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4))
    width = 0.8 / len(runs)
    for ax, (key, title) in zip(axes, PANELS, strict=True):
        for i, run in enumerate(runs):
            xs = [w + (i - (len(runs) - 1) / 2) * width for w in range(len(workloads))]
            values = [run["results"][w][key] for w in workloads]
            ax.bar(xs, values, width, label=f"{run['arm']} (round {run['round']})", color=f"C{ARMS.index(run['arm'])}")
            if key == "hit_rate":
                ideal = [run["results"][w]["ideal_hit_rate"] for w in workloads]
                ax.scatter(xs, ideal, marker="_", color="black", s=80, zorder=3)
        ax.set_xticks(range(len(workloads)), workloads)
        ax.set_title(title + (" (-: ideal)" if key == "hit_rate" else ""))
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / ".cache" / "models" / "smollm2-135m-instruct"))
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="2: arms A B C then C B A")
    parser.add_argument("--groups", type=int, default=6)
    parser.add_argument("--conversations", type=int, default=2, help="per group")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=4, help="shared workload: turns running at once")
    parser.add_argument("--kv-blocks", type=int, default=64, help="KV cache blocks per replica (0: vLLM's own size)")
    parser.add_argument("--prefix-words", type=int, default=1000)
    parser.add_argument("--turn-words", type=int, default=40)
    parser.add_argument("--burst", type=int, default=16, help="requests of the unique and hot workloads")
    parser.add_argument("--concurrency", type=int, default=4, help="unique workload")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", default=str(RESULTS / "routing.json"))
    parser.add_argument("--replot", action="store_true", help="redraw the table and plot of --out; run nothing")
    args = parser.parse_args()
    out = Path(args.out)
    if args.replot:
        runs = json.loads(out.read_text())["runs"]
        print(table(runs))
        plot(runs, out.with_suffix(".png"))
        return

    import ray
    from ray import serve

    from shardline.router.scorers import tokenizer as load_tokenizer
    from shardline.serve import lifecycle

    skipped = {arm: why for arm in args.arms.split(",") if (why := unavailable(arm))}
    for arm, why in skipped.items():
        print(f"arm {arm} skipped: {why}", flush=True)
    arms = [arm for arm in args.arms.split(",") if arm not in skipped]
    order = [(r + 1, a) for r in range(args.rounds) for a in (arms if r % 2 == 0 else arms[::-1])]
    tokenizer = load_tokenizer(str(Path(args.model) / "tokenizer.json"))
    runs: list[dict] = []
    lifecycle.connect(None, spec_for(arms[0], args.model, args.replicas))
    try:
        for i, (round_, arm) in enumerate(order):
            spec = spec_for(arm, args.model, args.replicas, args.kv_blocks)
            print(f"arm {arm}: deploying {args.replicas} replicas", flush=True)
            endpoint = deploy(arm, spec)
            try:
                block = spec.models[0].routing_block_tokens
                run = asyncio.run(
                    run_arm(arm, f"127.0.0.1:{endpoint.port}", spec.name, tokenizer, block, args, args.seed + i)
                )
            finally:
                lifecycle.undeploy(spec.name)
            runs.append({"arm": arm, "round": round_, "results": run})
    finally:
        serve.shutdown()
        ray.shutdown()
    print(table(runs))
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"args": vars(args), "block_tokens": block, "runs": runs, "skipped": skipped}
    out.write_text(json.dumps(data, indent=2) + "\n")
    plot(runs, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
