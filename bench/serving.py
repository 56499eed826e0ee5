"""Serving overhead against the peers, arms interleaved so that drift cancels.

All systems are up at once on the same model and engine arguments (the spec's first
model): vLLM's own OpenAI server (a subprocess), Ray Serve LLM's OpenAI app
(`ray.serve.llm.build_openai_app`) and Shardline, driven over gRPC and over its
OpenAI HTTP door (one Shardline deployment serves both). Then, for each round and
each concurrency level, every arm gets one load burst in turn (the arm order
rotates each round). A burst at concurrency C is C streams, each sending
ceil(--min-requests / C) greedy requests of --max-tokens tokens (EOS ignored).
Per burst: tokens/s, TTFT and inter-token latency (the gap between consecutive
streamed messages). The report gives each arm's median tokens/s over rounds,
percentiles pooled over rounds, and Shardline's per-round ratio to each peer with
its median. JSON and a plot go to bench/results/serving-<spec>.json / .png.

    .venv/bin/python bench/serving.py deployments/bench-tp1.yaml
    .venv/bin/python bench/serving.py deployments/bench-tp2.yaml --concurrency 16,64 --rounds 5

Pinning: every engine gets the environment a Shardline replica gives its engine
(serving_arms.engine_env), so each system's engine workers sit on the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from serving_arms import PROMPTS, Arm, Sample, free_port, grpc_arm, ray_llm_app, sse_arm, start_vllm_server, wait_http

RESULTS = Path(__file__).parent / "results"
BASELINE = "vllm server"


@dataclass
class Burst:
    arm: str
    concurrency: int
    round: int
    wall_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.samples)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


async def burst(arm: Arm, concurrency: int, rnd: int, args) -> Burst:
    result = Burst(arm.name, concurrency, rnd)
    per_stream = math.ceil(args.min_requests / concurrency)

    async def stream(i: int) -> None:
        for r in range(per_stream):
            try:
                result.samples.append(await arm.one_request(PROMPTS[(i + r) % len(PROMPTS)], args.max_tokens))
            except Exception as exc:  # counted and reported: a bench must not hide failures
                result.errors.append(f"{type(exc).__name__}: {exc}"[:200])

    start = time.perf_counter()
    await asyncio.gather(*(stream(i) for i in range(concurrency)))
    result.wall_s = time.perf_counter() - start
    return result


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summarize(bursts: list[Burst]) -> dict:
    samples = [s for b in bursts for s in b.samples]
    ttft = [s.ttft_s * 1000 for s in samples if s.ttft_s is not None]
    itl = [g * 1000 for s in samples for g in s.gaps_s]
    messages = sum(s.messages for s in samples)
    return {
        "tokens_per_s_median": round(statistics.median(b.tokens_per_s for b in bursts), 1),
        "tokens_per_s_rounds": [round(b.tokens_per_s, 1) for b in bursts],
        "ttft_p50_ms": _r(pct(ttft, 50)),
        "ttft_p99_ms": _r(pct(ttft, 99)),
        "itl_p50_ms": _r(pct(itl, 50)),
        "itl_p99_ms": _r(pct(itl, 99)),
        "tokens_per_message": round(sum(s.tokens for s in samples) / messages, 2) if messages else None,
        "requests": len(samples),
        "errors": sum(len(b.errors) for b in bursts),
        "first_errors": [e for b in bursts for e in b.errors][:3],
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def ratios(bursts: list[Burst], arms: list[str], levels: list[int], summary: dict) -> dict:
    """Shardline's per-round tokens/s ratio to each peer (and the median), plus
    the ratio of pooled latency percentiles."""
    by = {(b.arm, b.concurrency, b.round): b for b in bursts}
    rounds = sorted({b.round for b in bursts})
    out = {}
    for ours in (a for a in arms if a.startswith("shardline")):
        for peer in (a for a in arms if not a.startswith("shardline")):
            for c in levels:
                per_round = [by[ours, c, r].tokens_per_s / by[peer, c, r].tokens_per_s for r in rounds]
                s, p = summary[ours][str(c)], summary[peer][str(c)]
                out[f"{ours} / {peer} @ {c}"] = {
                    "tokens_per_s_rounds": [round(x, 3) for x in per_round],
                    "tokens_per_s_median": round(statistics.median(per_round), 3),
                    **{k: _ratio(s[k], p[k]) for k in ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms")},
                }
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def print_table(summary: dict, table_ratios: dict, levels: list[int]) -> None:
    header = (
        f"{'arm':<18}{'C':>5}{'tok/s':>9}{'TTFT p50':>10}{'p99':>8}{'ITL p50':>9}{'p99':>8}{'tok/msg':>9}{'err':>5}"
    )
    print(header)
    print("-" * len(header))
    for c in levels:
        for arm, rows in summary.items():
            r = rows[str(c)]
            print(
                f"{arm:<18}{c:>5}{r['tokens_per_s_median']:>9.0f}{_f(r['ttft_p50_ms']):>10}{_f(r['ttft_p99_ms']):>8}"
                f"{_f(r['itl_p50_ms']):>9}{_f(r['itl_p99_ms']):>8}{_f(r['tokens_per_message']):>9}{r['errors']:>5}"
            )
    print()
    for key, r in table_ratios.items():
        print(
            f"{key:<48} tokens/s {r['tokens_per_s_median']:.2f}x (rounds {r['tokens_per_s_rounds']}), "
            f"TTFT p99 {_f(r['ttft_p99_ms'])}x, ITL p99 {_f(r['itl_p99_ms'])}x"
        )


def _f(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def plot(summary: dict, levels: list[int], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, (arm, rows) in enumerate(summary.items()):
        color = f"C{i}"
        tps = [rows[str(c)]["tokens_per_s_median"] for c in levels]
        lo = [t - min(rows[str(c)]["tokens_per_s_rounds"]) for t, c in zip(tps, levels)]
        hi = [max(rows[str(c)]["tokens_per_s_rounds"]) - t for t, c in zip(tps, levels)]
        axes[0].errorbar(levels, tps, yerr=[lo, hi], marker="o", capsize=3, color=color, label=arm)
        for ax, key in ((axes[1], "ttft"), (axes[2], "itl")):
            ax.plot(levels, [rows[str(c)][f"{key}_p99_ms"] for c in levels], marker="o", color=color)
            p50 = [rows[str(c)][f"{key}_p50_ms"] for c in levels]
            ax.plot(levels, p50, ls="--", marker=".", color=color, alpha=0.5)
    for ax, ylabel in zip(axes, ("tokens/s (median, min-max over rounds)", "TTFT ms (p99; dashed p50)", "ITL ms")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[2].set_yscale("symlog", linthresh=1)
    axes[2].set_ylim(bottom=0)
    axes[2].set_ylabel("inter-token latency ms (p99; dashed p50)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def bring_up(spec, args, stack) -> list[Arm]:
    """Every selected system up at once: vLLM's server, Ray Serve LLM, Shardline (both doors)."""
    import aiohttp
    from ray import serve

    from shardline.client import AsyncClient
    from shardline.serve import lifecycle

    model, wanted, arms = spec.models[0], set(args.arms), {}
    session = await stack.enter_async_context(
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), connector=aiohttp.TCPConnector(limit=0))
    )
    if BASELINE in wanted:
        port = free_port()
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"serving-{Path(args.spec).stem}-vllm-server.log"
        server = start_vllm_server(model, port, log)
        stack.callback(lambda: (server.terminate(), server.wait(60)))
        arms[BASELINE] = sse_arm(BASELINE, session, f"http://127.0.0.1:{port}", model.name)
    # Room for Ray Serve LLM's replica, engine bundle and ingress beside Shardline's.
    lifecycle.connect(None, spec, spare_cpus=4)
    stack.callback(_ray_down)
    # Shardline disables Serve's HTTP proxy; Ray Serve LLM needs it, so it starts first.
    ray_port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": ray_port})
    if wanted & {"shardline gRPC", "shardline HTTP"}:
        t0 = time.monotonic()
        endpoint = await asyncio.to_thread(lifecycle.deploy, spec, 900)
        print(f"shardline up in {time.monotonic() - t0:.0f} s", flush=True)
        client = await stack.enter_async_context(AsyncClient(f"127.0.0.1:{endpoint.port}"))
        arms["shardline gRPC"] = grpc_arm(client, model.name)
        http_url = f"http://127.0.0.1:{endpoint.http_port}"
        arms["shardline HTTP"] = sse_arm("shardline HTTP", session, http_url, model.name)
    if "ray serve llm" in wanted:
        t0 = time.monotonic()
        await asyncio.to_thread(serve.run, ray_llm_app(model), name="ray-llm", route_prefix="/", blocking=False)
        await wait_http(session, f"http://127.0.0.1:{ray_port}/v1/models")
        print(f"ray serve llm up in {time.monotonic() - t0:.0f} s", flush=True)
        arms["ray serve llm"] = sse_arm("ray serve llm", session, f"http://127.0.0.1:{ray_port}", model.name)
    if BASELINE in wanted:
        await wait_http(session, arms[BASELINE].url + "/health", lambda: server.poll() is None)
    return [arms[a] for a in args.arms]


def _title(spec: str, model: dict) -> str:
    return f"{Path(spec).name}: TP={model['tensor']}, stream_interval_ms {model['stream_interval_ms']:g}"


def _ray_down() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


async def run(spec, args) -> list[Burst]:
    import contextlib

    async with contextlib.AsyncExitStack() as stack:
        arms = await bring_up(spec, args, stack)
        warm = min(max(args.concurrency), 64)
        for arm in arms:  # unrecorded: first requests, first large batch
            w = await burst(arm, warm, -1, argparse.Namespace(min_requests=warm, max_tokens=16))
            if w.errors:
                raise RuntimeError(f"{arm.name} fails its warm-up: {w.errors[0]}")
        bursts = []
        for rnd in range(args.rounds):
            order = arms[rnd % len(arms) :] + arms[: rnd % len(arms)]
            for c in args.concurrency:
                for arm in order:
                    b = await burst(arm, c, rnd, args)
                    bursts.append(b)
                    print(
                        f"round {rnd} C={c:<4} {arm.name:<16} {b.tokens_per_s:8.0f} tok/s"
                        + (f"  {len(b.errors)} errors" if b.errors else ""),
                        flush=True,
                    )
        return bursts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--concurrency", default="1,16,64,256", help="comma-separated stream counts")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-requests", type=int, default=32, help="requests per burst, at least")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--arms", default=f"{BASELINE},ray serve llm,shardline gRPC,shardline HTTP")
    parser.add_argument("--stream-interval-ms", type=float, help="override the spec's coalescing interval")
    parser.add_argument("--out", help="JSON path (default: bench/results/serving-<spec name>.json)")
    parser.add_argument("--replot", action="store_true", help="only redraw the plot from --out's JSON")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.arms = [a.strip() for a in args.arms.split(",")]

    from shardline.spec import load_spec

    spec = load_spec(args.spec)
    model = spec.models[0]
    if args.stream_interval_ms is not None:
        model = model.model_copy(update={"stream_interval_ms": args.stream_interval_ms})
    router = spec.router.model_copy(update={"http_port": free_port()})
    spec = spec.model_copy(update={"models": (model, *spec.models[1:]), "router": router})
    out = Path(args.out or RESULTS / f"serving-{Path(args.spec).stem}.json")
    if args.replot:
        data = json.loads(out.read_text())
        levels = data["workload"]["concurrency"]
        plot(data["summary"], levels, _title(args.spec, data["model"]), out.with_suffix(".png"))
        return

    started = time.time()
    # `kill` unwinds like Ctrl-C, so vLLM's server and the Ray cluster go down with us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bursts = asyncio.run(run(spec, args))
    summary = {
        a: {str(c): summarize([b for b in bursts if b.arm == a and b.concurrency == c]) for c in args.concurrency}
        for a in args.arms
    }
    table_ratios = ratios(bursts, args.arms, args.concurrency, summary)
    print_table(summary, table_ratios, args.concurrency)
    data = {
        "benchmark": "serving-interleaved",
        "machine": {
            "node": platform.node(),
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "python": platform.python_version(),
        },
        "spec": args.spec,
        "model": {
            "name": model.name,
            "tensor": model.parallelism.tensor,
            "dtype": model.dtype,
            "env": model.env,
            "stream_interval_ms": model.stream_interval_ms,
        },
        "workload": {
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "min_requests_per_burst": args.min_requests,
            "max_tokens": args.max_tokens,
            "duration_s": round(time.time() - started),
        },
        "summary": summary,
        "ratios": table_ratios,
        "bursts": [
            {"arm": b.arm, "concurrency": b.concurrency, "round": b.round, "tokens_per_s": round(b.tokens_per_s, 1)}
            for b in bursts
        ],
    }
    out.write_text(json.dumps(data, indent=2) + "\n")
    plot(summary, args.concurrency, _title(args.spec, data["model"]), out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
