"""`shardline demo`: embedded cluster -> deploy -> ask each tier retrieval questions -> table.

Ray, Serve and the client load inside `run_demo`, so that registering the command
costs the other commands nothing (importing Ray takes over a second)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shardline.cli.output import printable, say, table
from shardline.models import tasks

if TYPE_CHECKING:
    from shardline.client import Client
    from shardline.spec.deployment import DeploymentSpec

DEMO_CONTEXTS = (80, 250, 800)  # words of context before the question
QUESTIONS_PER_CONTEXT = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="embedded cluster: deploy, stream a few generations, report, shut down")
    p.add_argument("spec")
    p.add_argument("--timeout", type=float, default=600.0)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from shardline.spec import load_spec

    results = run_demo(load_spec(args.spec), args.timeout)
    return 0 if results and all(r.tokens > 0 for r in results) else 1


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
    from shardline.client import trace_id
    from shardline.models.evaluate import ANSWER_SAMPLING

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


def _table_row(r: StreamResult, item: tasks.Item) -> tuple:
    right = "yes" if tasks.score(item, r.text) else "no"
    return (r.model, r.context_words, r.ttft_s * 1000, r.tokens, r.tokens_per_s, r.text.strip(), item.answer, right)


def run_demo(spec: DeploymentSpec, timeout_s: float) -> list[StreamResult]:
    import ray
    from ray import serve

    from shardline.client import Client
    from shardline.serve import lifecycle

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
                        rows.append(_table_row(r, item))
        say()
        say(table(["model", "context words", "TTFT ms", "tokens", "tokens/s", "answer", "expected", "right"], rows))
        if spec.telemetry.exporter == "file":
            store = spec.telemetry.trace_dir
            say(f"\nspan trees: shardline trace --last, or shardline trace TRACE_ID (store: {store})")
        return results
    finally:
        serve.shutdown()
        ray.shutdown()
