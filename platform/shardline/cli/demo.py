"""`shardline demo`: embedded cluster -> deploy -> stream a few generations -> table."""

from __future__ import annotations

import time
from dataclasses import dataclass

import ray
from ray import serve

from shardline.serve import lifecycle
from shardline.cli.output import printable, say, table
from shardline.client import Client
from shardline.spec.model import DeploymentSpec

PROMPTS = (
    "The code of amber is",
    "Once upon a time there was a small village by the sea.",
    "Question: what is two plus three? Answer:",
)


@dataclass(frozen=True)
class StreamResult:
    prompt: str
    ttft_s: float
    tokens: int
    total_s: float
    finish_reason: str

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.total_s if self.total_s else 0.0


def stream_to_terminal(client: Client, model: str, prompt: str, **sampling) -> StreamResult:
    start = time.perf_counter()
    ttft, tokens, finish = None, 0, ""
    say(f"\n> {prompt}\n", end="")
    for chunk in client.stream(model, prompt, **sampling):
        if ttft is None and chunk.token_ids:
            ttft = time.perf_counter() - start
        tokens += len(chunk.token_ids)
        finish = chunk.finish_reason or finish
        say(printable(chunk.text), end="")
    say()
    total = time.perf_counter() - start
    return StreamResult(prompt, ttft or total, tokens, total, finish)


def run_demo(spec: DeploymentSpec, timeout_s: float, max_tokens: int = 32) -> list[StreamResult]:
    lifecycle.connect(None, spec)
    try:
        endpoint = lifecycle.deploy(spec, timeout_s, progress=lambda line: say(f"  {line}"))
        model = spec.models[0]
        say(f"router SERVING at {endpoint.target}; model {model.name} "
            f"(TP={model.parallelism.tensor}, PP={model.parallelism.pipeline})")
        with Client(endpoint.target) as client:
            results = [
                stream_to_terminal(client, model.name, p, max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
                for p in PROMPTS
            ]
        say()
        say(table(
            ["prompt", "TTFT ms", "tokens", "tokens/s", "finish"],
            [(r.prompt[:32], r.ttft_s * 1000, r.tokens, r.tokens_per_s, r.finish_reason) for r in results],
        ))
        return results
    finally:
        serve.shutdown()
        ray.shutdown()
