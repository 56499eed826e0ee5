"""`shardline demo`: embedded cluster -> deploy -> real questions to every model and
cascade, streamed -> one chat over the OpenAI door -> table -> shut down.

The questions (models/questions.py) have answers a program checks: a capital, a
sum, a value stated in the question, and a fact placed in real prose. Each is
asked greedily of every served model and every cascade, so the table shows which
tier answered and whether it was right.

Ray, Serve and the client load inside `run_demo`, so that registering the command
costs the other commands nothing (importing Ray takes over a second)."""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shardline.cli.engine_view import engine_line
from shardline.cli.output import printable, say, table
from shardline.models import questions
from shardline.wire import TENANT

if TYPE_CHECKING:
    from shardline.client import Client
    from shardline.spec.deployment import DeploymentSpec

SHORT_QUESTIONS = 3
NEEDLE_WORDS = 1200
"""Words of real prose around the needle: long enough that the cascade's first
tier compresses it (min_prompt_tokens in demo.yaml)."""
ANSWER_SAMPLING = {"max_tokens": 12, "temperature": 0.0, "stop": ["\n"]}
"""Greedy, one line: every question's answer fits on it."""
CHAT = "What is the capital of France? Answer in one sentence."


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
    kind: str
    ttft_s: float
    tokens: int
    total_s: float
    text: str
    trace_id: str
    answered_by: str
    prompt_tokens_sent: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.total_s if self.total_s else 0.0


def stream_to_terminal(client: Client, model: str, item: questions.Item) -> StreamResult:
    from shardline.client import trace_id

    start = time.perf_counter()
    ttft, tokens, text, last = None, 0, [], None
    say(f"\n[{model}] ...{printable(' '.join(item.prompt.split())[-70:])}", end="")
    call = client.stream(model, item.prompt, tenant="demo", **ANSWER_SAMPLING)
    for chunk in call:
        if ttft is None and chunk.token_ids:
            ttft = time.perf_counter() - start
        tokens += len(chunk.token_ids)
        text.append(chunk.text)
        say(printable(chunk.text), end="")
        last = chunk
    total = time.perf_counter() - start
    say(f"   (trace {trace_id(call) or 'off'})")
    report = last.report
    sent = report.compression.sent_prompt_tokens or last.usage.prompt_tokens
    return StreamResult(
        model,
        item.kind,
        ttft or total,
        tokens,
        total,
        "".join(text),
        trace_id(call),
        report.decoding.answered_by or model,
        sent,
    )


def _table_row(r: StreamResult, item: questions.Item) -> tuple:
    right = "yes" if questions.score(item, r.text) else "no"
    return (
        r.model,
        r.kind,
        r.prompt_tokens_sent,
        r.ttft_s * 1000,
        r.tokens_per_s,
        r.text.strip(),
        item.answer,
        right,
        r.answered_by,
    )


def chat_over_http(port: int, model: str) -> str:
    """One chat completion through the OpenAI-compatible door (the model's own chat template)."""
    body = {"model": model, "messages": [{"role": "user", "content": CHAT}], "max_tokens": 24, "temperature": 0}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", TENANT: "demo"},
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.load(reply)["choices"][0]["message"]["content"]


def run_demo(spec: DeploymentSpec, timeout_s: float) -> list[StreamResult]:
    import ray
    from ray import serve

    from shardline.client import Client
    from shardline.serve import lifecycle

    lifecycle.connect(None, spec)
    try:
        endpoint = lifecycle.deploy(spec, timeout_s, progress=lambda line: say(f"  {line}"))
        say(f"router SERVING at {endpoint.target}")
        names = [m.name for m in spec.models] + [c.name for c in spec.policies.cascades]
        items = questions.short_answers(0, SHORT_QUESTIONS) + questions.needle_in_prose(0, 1, NEEDLE_WORDS)
        results, rows = [], []
        with Client(endpoint.target) as client:
            for info in client.list_models():  # what each engine reports it runs
                say(f"  model {engine_line(info.name, info)}")
            for item in items:
                for name in names:
                    r = stream_to_terminal(client, name, item)
                    results.append(r)
                    rows.append(_table_row(r, item))
        say()
        header = [
            "model",
            "question",
            "prompt tokens",
            "TTFT ms",
            "tokens/s",
            "answer",
            "expected",
            "right",
            "answered by",
        ]
        say(table(header, rows))
        if endpoint.http_port is not None:
            chat_model = spec.policies.cascades[0].name if spec.policies.cascades else spec.models[0].name
            say(f"\nOpenAI chat, {chat_model}: {CHAT}\n  {printable(chat_over_http(endpoint.http_port, chat_model))}")
        if spec.telemetry.exporter == "file":
            store = spec.telemetry.trace_dir
            say(f"\nspan trees: shardline trace --last, or shardline trace TRACE_ID (store: {store})")
        return results
    finally:
        serve.shutdown()
        ray.shutdown()
