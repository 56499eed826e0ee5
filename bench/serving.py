"""Serving benchmark: N concurrent streams through the gRPC router vs vLLM in-process.

Both phases use the same engine configuration (the spec's first model) and the
same workload: `--streams` concurrent clients, each sending `--requests` greedy
requests of `--max-tokens` tokens (EOS ignored, so every request yields exactly
that many). Phase 1 drives `AsyncLLM` directly in this process; phase 2 deploys
the spec on an embedded Ray cluster and drives the router over gRPC. Prints a
table with the ratios and writes JSON to bench/results/serving.json.

    .venv/bin/python bench/serving.py deployments/demo.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

PROMPTS = [
    "The code of amber is",
    "Once upon a time there was a small village by the sea.",
    "Question: what is two plus three? Answer:",
    "Shardline serves language models on a cluster.",
]
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


async def direct_phase(model, args) -> PhaseResult:
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    from shardline.engine.cpu_env import configure_cpu_environment
    from shardline.engine.vllm_engine import cuda_available, engine_kwargs

    on_gpu = cuda_available()
    if not on_gpu:
        configure_cpu_environment(model.parallelism.world_size)
    llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_kwargs(model, on_gpu)))
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True,
                            output_kind=RequestOutputKind.DELTA)

    async def one_request(prompt: str) -> tuple[float, int]:
        start, ttft, n = time.perf_counter(), None, 0
        async for out in llm.generate({"prompt": prompt}, params, uuid.uuid4().hex):
            n += len(out.outputs[0].token_ids)
            if ttft is None and n:
                ttft = time.perf_counter() - start
        return ttft, n

    try:
        await one_request("warm up")
        return await run_load("vllm AsyncLLM in-process", one_request, args.streams, args.requests)
    finally:
        llm.shutdown()


async def router_phase(spec, args) -> PhaseResult:
    from ray import serve

    from shardline.client import AsyncClient
    from shardline.serve import lifecycle

    lifecycle.connect(None, spec)
    try:
        endpoint = await asyncio.to_thread(lifecycle.deploy, spec, 900)
        model = spec.models[0].name
        async with AsyncClient(f"127.0.0.1:{endpoint.port}") as client:

            async def one_request(prompt: str) -> tuple[float, int]:
                start, ttft, n = time.perf_counter(), None, 0
                async for chunk in client.stream(model, prompt, max_tokens=args.max_tokens,
                                                 temperature=0.0, ignore_eos=True):
                    n += len(chunk.token_ids)
                    if ttft is None and n:
                        ttft = time.perf_counter() - start
                return ttft, n

            await one_request("warm up")
            return await run_load("shardline gRPC router", one_request, args.streams, args.requests)
    finally:
        serve.shutdown()
        import ray

        ray.shutdown()


def report(direct: PhaseResult, routed: PhaseResult, spec, args) -> dict:
    rows = [direct.summary(), routed.summary()]
    ratios = {
        "throughput_ratio": round(routed.tokens_per_s / direct.tokens_per_s, 3),
        "ttft_p50_ratio": round(routed.ttft(50) / direct.ttft(50), 3),
        "ttft_p99_ratio": round(routed.ttft(99) / direct.ttft(99), 3),
    }
    header = f"{'path':<28}{'tokens/s':>10}{'TTFT p50 ms':>13}{'TTFT p99 ms':>13}{'requests':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<28}{r['tokens_per_s']:>10.1f}{r['ttft_p50_ms']:>13.1f}{r['ttft_p99_ms']:>13.1f}{r['requests']:>10}")
    print(f"router/direct: throughput {ratios['throughput_ratio']:.3f}x, "
          f"TTFT p50 {ratios['ttft_p50_ratio']:.2f}x, p99 {ratios['ttft_p99_ratio']:.2f}x")
    m = spec.models[0]
    return {
        "benchmark": "serving",
        "machine": {"node": platform.node(), "cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "model": {"name": m.name, "tensor": m.parallelism.tensor, "pipeline": m.parallelism.pipeline, "dtype": m.dtype},
        "workload": {"streams": args.streams, "requests_per_stream": args.requests, "max_tokens": args.max_tokens},
        "results": rows,
        **ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4, help="sequential requests per stream")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", default=str(RESULTS / "serving.json"))
    args = parser.parse_args()

    from shardline.spec import load_spec

    spec = load_spec(args.spec)
    direct = asyncio.run(direct_phase(spec.models[0], args))
    routed = asyncio.run(router_phase(spec, args))
    data = report(direct, routed, spec, args)
    Path(args.out).write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
