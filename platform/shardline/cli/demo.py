"""`shardline demo`: embedded cluster -> deploy -> ask each tier retrieval questions -> table."""

from __future__ import annotations

import time
from dataclasses import dataclass

import ray
from ray import serve

from shardline.cli.output import printable, say, table
from shardline.client import Client, trace_id
from shardline.models import tasks
from shardline.models.evaluate import ANSWER_SAMPLING
from shardline.serve import lifecycle
from shardline.spec.deployment import DeploymentSpec

DEMO_CONTEXTS = (80, 250, 800)  # words of context before the question
QUESTIONS_PER_CONTEXT = 2


@dataclass(frozen=True)
class StreamResult:
    model: str
    context_words: int
    ttft_s: float
    tokens: int
    total_s: float
    text: str
    trace_id: str

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.total_s if self.total_s else 0.0


def stream_to_terminal(client: Client, model: str, item: tasks.Item, context_words: int) -> StreamResult:
    start = time.perf_counter()
    ttft, tokens, text = None, 0, []
    say(f"\n[{model}] ...{item.prompt[-60:]}", end="")
    call = client.stream(model, item.prompt, **ANSWER_SAMPLING)
    for chunk in call:
        if ttft is None and chunk.token_ids:
            ttft = time.perf_counter() - start
        tokens += len(chunk.token_ids)
        text.append(chunk.text)
        say(printable(chunk.text), end="")
    total = time.perf_counter() - start
    say(f"   (trace {trace_id(call) or 'off'})")
    return StreamResult(model, context_words, ttft or total, tokens, total, "".join(text), trace_id(call))


def run_demo(spec: DeploymentSpec, timeout_s: float) -> list[StreamResult]:
    lifecycle.connect(None, spec)
    try:
        endpoint = lifecycle.deploy(spec, timeout_s, progress=lambda line: say(f"  {line}"))
        say(f"router SERVING at {endpoint.target}")
        for m in spec.models:
            say(f"  model {m.name} (TP={m.parallelism.tensor}, PP={m.parallelism.pipeline})")
        results, rows = [], []
        with Client(endpoint.target) as client:
            for words in DEMO_CONTEXTS:
                for item in tasks.items_for_length(words, QUESTIONS_PER_CONTEXT, words):
                    for m in spec.models:
                        r = stream_to_terminal(client, m.name, item, words)
                        results.append(r)
                        right = "yes" if tasks.score(item, r.text) else "no"
                        rows.append((m.name, words, r.ttft_s * 1000, r.tokens, r.tokens_per_s,
                                     r.text.strip(), item.answer, right))
        say()
        say(table(["model", "context words", "TTFT ms", "tokens", "tokens/s", "answer", "expected", "right"], rows))
        if spec.telemetry.exporter == "file":
            say(f"\nspan trees: shardline trace --last, or shardline trace TRACE_ID (store: {spec.telemetry.trace_dir})")
        return results
    finally:
        serve.shutdown()
        ray.shutdown()
