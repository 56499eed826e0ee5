"""Tracing overhead: the router path deployed four times, tracing off, on, on, off.

Metrics stay on throughout; the alternation lets drift on a shared machine hit
both modes alike. Writes bench/results/serving-<spec>-tracing.json.

    .venv/bin/python bench/serving_tracing.py deployments/bench-tp1.yaml --requests 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from serving_arms import PROMPTS  # noqa: E402

RESULTS = Path(__file__).parent / "results"


@dataclass
class PhaseResult:
    name: str
    requests: int
    tokens: int
    wall_s: float
    ttft_ms: list[float]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s

    def ttft(self, q: float) -> float:
        return statistics.quantiles(self.ttft_ms, n=100, method="inclusive")[int(q) - 1]

    def summary(self) -> dict:
        return {
            "name": self.name,
            "requests": self.requests,
            "tokens": self.tokens,
            "wall_s": round(self.wall_s, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "ttft_p50_ms": round(self.ttft(50), 2),
            "ttft_p99_ms": round(self.ttft(99), 2),
        }


async def run_load(name: str, one_request, streams: int, requests: int) -> PhaseResult:
    """`one_request(prompt) -> (ttft_s, tokens)`; streams run concurrently."""
    ttfts, tokens = [], 0

    async def client(i: int) -> None:
        nonlocal tokens
        for r in range(requests):
            ttft, n = await one_request(PROMPTS[(i + r) % len(PROMPTS)])
            ttfts.append(ttft * 1000)
            tokens += n

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(streams)))
    return PhaseResult(name, streams * requests, tokens, time.perf_counter() - start, ttfts)


async def first_token_and_count(counts) -> tuple[float, int]:
    """Consume an async iterator of per-event token counts: (TTFT s, total tokens)."""
    start, ttft, n = time.perf_counter(), None, 0
    async for k in counts:
        n += k
        if ttft is None and n:
            ttft = time.perf_counter() - start
    return ttft, n


async def router_phase(spec, args, name: str = "shardline gRPC router") -> PhaseResult:
    from ray import serve

    from shardline.client import AsyncClient
    from shardline.serve import lifecycle

    lifecycle.connect(None, spec)
    try:
        endpoint = await asyncio.to_thread(lifecycle.deploy, spec, 900)
        model = spec.models[0].name
        async with AsyncClient(f"127.0.0.1:{endpoint.port}") as client:

            async def one_request(prompt: str) -> tuple[float, int]:
                chunks = client.stream(model, prompt, max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True)
                return await first_token_and_count(len(c.token_ids) async for c in chunks)

            await one_request("warm up")
            return await run_load(name, one_request, args.streams, args.requests)
    finally:
        serve.shutdown()
        import ray

        ray.shutdown()


# Tracing overhead: the router path with tracing off and on, alternated so that
# drift on a shared machine hits both alike.
TRACING_ORDER = ("off", "on", "on", "off")


def with_exporter(spec, exporter: str):
    telemetry = spec.telemetry.model_copy(update={"exporter": exporter})
    return spec.model_copy(update={"telemetry": telemetry})


def tracing_comparison(spec, args) -> dict:
    if not spec.telemetry.tracing:
        raise SystemExit("--compare-tracing needs a spec whose telemetry.exporter is not off")
    runs = []
    for mode in TRACING_ORDER:
        phase_spec = spec if mode == "on" else with_exporter(spec, "off")
        name = f"router, tracing {mode}" + (f" ({spec.telemetry.exporter})" if mode == "on" else "")
        runs.append(asyncio.run(router_phase(phase_spec, args, name)))
    header = f"{'path':<32}{'tokens/s':>10}{'TTFT p50 ms':>13}{'TTFT p99 ms':>13}{'requests':>10}"
    print(header)
    print("-" * len(header))
    for r in map(PhaseResult.summary, runs):
        print(
            f"{r['name']:<32}{r['tokens_per_s']:>10.1f}{r['ttft_p50_ms']:>13.1f}{r['ttft_p99_ms']:>13.1f}{r['requests']:>10}"
        )
    mean = {
        mode: statistics.mean(r.tokens_per_s for r, m in zip(runs, TRACING_ORDER) if m == mode)
        for mode in ("off", "on")
    }
    ratio = mean["on"] / mean["off"]
    print(f"tracing on vs off: throughput {ratio:.3f}x (means {mean['on']:.1f} vs {mean['off']:.1f} tokens/s)")
    return {
        "benchmark": "serving-tracing",
        "spec": args.spec,
        "exporter": spec.telemetry.exporter,
        "workload": {"streams": args.streams, "requests_per_stream": args.requests, "max_tokens": args.max_tokens},
        "results": [r.summary() for r in runs],
        "throughput_on_vs_off": round(ratio, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--requests", type=int, default=8, help="sequential requests per stream")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", help="JSON path (default: bench/results/serving-<spec name>-tracing.json)")
    args = parser.parse_args()

    from shardline.spec import load_spec

    spec = load_spec(args.spec)
    out = Path(args.out or RESULTS / f"serving-{Path(args.spec).stem}-tracing.json")
    out.write_text(json.dumps(tracing_comparison(spec, args), indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
