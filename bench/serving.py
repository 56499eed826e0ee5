"""Serving benchmark: N concurrent streams through the gRPC router vs vLLM in-process and vLLM's server.

All phases use the same engine configuration (the spec's first model) and the
same workload: `--streams` concurrent clients, each sending `--requests` greedy
requests of `--max-tokens` tokens (EOS ignored, so every request yields exactly
that many). Phase 1 drives `AsyncLLM` directly in this process; phase 2 streams
from vLLM's own OpenAI server (HTTP/SSE, a separate process); phase 3 deploys
the spec on an embedded Ray cluster and drives the router over gRPC. Prints a
table with the ratios and writes JSON to bench/results/serving-<spec>.json.

    .venv/bin/python bench/serving.py deployments/bench-tp1.yaml
    .venv/bin/python bench/serving.py deployments/bench-tp1.yaml --compare-tracing

`--compare-tracing` measures what tracing costs instead: only the router path,
deployed four times (tracing off, on, on, off; metrics on throughout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
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


async def first_token_and_count(counts) -> tuple[float, int]:
    """Consume an async iterator of per-event token counts: (TTFT s, total tokens)."""
    start, ttft, n = time.perf_counter(), None, 0
    async for k in counts:
        n += k
        if ttft is None and n:
            ttft = time.perf_counter() - start
    return ttft, n


async def direct_phase(model, args) -> PhaseResult:
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    from shardline.engine.cpu_env import configure_cpu_environment
    from shardline.engine.vllm_engine import engine_kwargs
    from shardline.spec.placement import device

    os.environ.update(model.env)  # what the replica's runtime_env sets
    if device(model) == "cpu":
        configure_cpu_environment(model.parallelism.world_size)
    llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_kwargs(model)))
    params = SamplingParams(
        max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True, output_kind=RequestOutputKind.DELTA
    )

    async def one_request(prompt: str) -> tuple[float, int]:
        outputs = llm.generate({"prompt": prompt}, params, uuid.uuid4().hex)
        return await first_token_and_count(len(out.outputs[0].token_ids) async for out in outputs)

    try:
        await one_request("warm up")
        return await run_load("vllm AsyncLLM in-process", one_request, args.streams, args.requests)
    finally:
        llm.shutdown()


async def vllm_server_phase(model, args) -> PhaseResult:
    """vLLM's own OpenAI server (separate process), streamed over HTTP/SSE."""
    import aiohttp

    from shardline.engine.cpu_env import configure_cpu_environment
    from shardline.engine.vllm_engine import engine_kwargs
    from shardline.spec.placement import device

    env = {**os.environ, **model.env}  # the server gets what the replica would
    if device(model) == "cpu":
        configure_cpu_environment(model.parallelism.world_size, env)
    port = 8011
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--port", str(port)]
    for key, value in engine_kwargs(model).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value not in (False, None):
            cmd += [flag, str(value)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_http(session, f"{url}/health", server)

            async def one_request(prompt: str) -> tuple[float, int]:
                body = {
                    "model": model.name,
                    "prompt": prompt,
                    "max_tokens": args.max_tokens,
                    "temperature": 0.0,
                    "ignore_eos": True,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                start, ttft, n = time.perf_counter(), None, 0
                async with session.post(f"{url}/v1/completions", json=body) as resp:
                    async for line in resp.content:
                        if not line.startswith(b"data: {"):
                            continue
                        event = json.loads(line[6:])
                        if ttft is None and event.get("choices"):
                            ttft = time.perf_counter() - start
                        if event.get("usage"):
                            n = event["usage"]["completion_tokens"]
                return ttft, n

            await one_request("warm up")
            return await run_load("vllm OpenAI server (HTTP)", one_request, args.streams, args.requests)
    finally:
        server.terminate()
        server.wait(60)


async def _wait_http(session, url: str, server, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"vLLM server exited with {server.returncode}")
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(1)
    raise TimeoutError(f"{url} not healthy after {timeout_s} s")


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


def report(direct: PhaseResult, server: PhaseResult, routed: PhaseResult, spec, args) -> dict:
    rows = [direct.summary(), server.summary(), routed.summary()]
    ratios = {
        f"router_vs_{key}": {
            "throughput": round(routed.tokens_per_s / base.tokens_per_s, 3),
            "ttft_p50": round(routed.ttft(50) / base.ttft(50), 3),
            "ttft_p99": round(routed.ttft(99) / base.ttft(99), 3),
        }
        for key, base in (("in_process", direct), ("vllm_server", server))
    }
    header = f"{'path':<28}{'tokens/s':>10}{'TTFT p50 ms':>13}{'TTFT p99 ms':>13}{'requests':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:<28}{r['tokens_per_s']:>10.1f}{r['ttft_p50_ms']:>13.1f}{r['ttft_p99_ms']:>13.1f}{r['requests']:>10}"
        )
    for key, r in ratios.items():
        print(f"{key}: throughput {r['throughput']:.3f}x, TTFT p50 {r['ttft_p50']:.2f}x, p99 {r['ttft_p99']:.2f}x")
    m = spec.models[0]
    return {
        "benchmark": "serving",
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "spec": args.spec,
        "model": {
            "name": m.name,
            "tensor": m.parallelism.tensor,
            "pipeline": m.parallelism.pipeline,
            "dtype": m.dtype,
            "env": m.env,
            "stream_interval_ms": m.stream_interval_ms,
        },
        "workload": {"streams": args.streams, "requests_per_stream": args.requests, "max_tokens": args.max_tokens},
        "results": rows,
        "ratios": ratios,
    }


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
    parser.add_argument("--stream-interval-ms", type=float, help="override the spec's value")
    parser.add_argument("--out", help="JSON path (default: bench/results/serving-<spec name>.json)")
    parser.add_argument(
        "--compare-tracing",
        action="store_true",
        help="only the router path, tracing off vs on, alternated (serving-<spec>-tracing.json)",
    )
    args = parser.parse_args()

    from shardline.spec import load_spec

    spec = load_spec(args.spec)
    if args.stream_interval_ms is not None:
        model = spec.models[0].model_copy(update={"stream_interval_ms": args.stream_interval_ms})
        spec = spec.model_copy(update={"models": (model, *spec.models[1:])})
    suffix = "-tracing" if args.compare_tracing else ""
    out = Path(args.out or RESULTS / f"serving-{Path(args.spec).stem}{suffix}.json")
    if args.compare_tracing:
        out.write_text(json.dumps(tracing_comparison(spec, args), indent=2) + "\n")
        print(f"wrote {out}")
        return
    direct = asyncio.run(direct_phase(spec.models[0], args))
    server = asyncio.run(vllm_server_phase(spec.models[0], args))
    routed = asyncio.run(router_phase(spec, args))
    data = report(direct, server, routed, spec, args)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
