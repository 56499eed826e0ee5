"""`shardline`: validate, deploy and talk to Shardline deployments."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

import grpc

from shardline.cli.output import printable, say, table, warn
from shardline.errors import ShardlineError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args) or 0
    except ShardlineError as exc:
        warn(f"error: {exc}")
        return 2
    except grpc.RpcError as exc:
        warn(f"error: {exc.code().name}: {exc.details()}")
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shardline", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="validate a deployment spec")
    p.add_argument("spec")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="write the spec's JSON schema into DIR")
    p.add_argument("dir")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("models", help="local model artifacts")
    models = p.add_subparsers(required=True, metavar="ACTION")
    b = models.add_parser("build-tiny", help="build the tiny Llama and Mixtral into DIR (cached)")
    b.add_argument("dir")
    b.add_argument("--force", action="store_true", help="rebuild even when present")
    b.set_defaults(func=cmd_build_tiny)
    t = models.add_parser("train-tiny", help="train the retrieval-task tiers (kv-small, kv-large, kv-moe) into DIR")
    t.add_argument("dir")
    t.add_argument("--tier", action="append", help="only this tier (repeatable)")
    t.set_defaults(func=cmd_train_tiny)

    p = sub.add_parser("quantize", help="write an int8 (shardline-int8) copy of checkpoint SRC into DST")
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("eval", help="accuracy on the retrieval task through a running router")
    p.add_argument("--target", default="localhost:50051", help="router host:port")
    p.add_argument("--model", action="append", required=True, help="model to evaluate (repeatable)")
    p.add_argument("--lengths", default="100,300,1000", help="context lengths in words, comma-separated")
    p.add_argument("--items", type=int, default=50, help="items per model and length")
    p.add_argument("--out", help="write the results as JSON here")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("up", help="deploy a spec and wait until it serves")
    p.add_argument("spec")
    _address(p)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for health")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="remove a deployment")
    _address(p)
    p.add_argument("--name", default="shardline", help="application name (spec's `name`)")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="models, replicas, health and endpoint")
    _address(p)
    p.add_argument("--name", default="shardline", help="application name (spec's `name`)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("generate", help="stream a completion to the terminal")
    p.add_argument("prompt")
    p.add_argument("--model", required=True)
    p.add_argument("--target", default="localhost:50051", help="router host:port")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--stop", action="append", default=[])
    p.add_argument("--seed", type=int)
    p.add_argument("--timeout", type=float, help="deadline in seconds")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="embedded cluster: deploy, stream a few generations, report, shut down")
    p.add_argument("spec")
    p.add_argument("--timeout", type=float, default=600.0)
    p.set_defaults(func=cmd_demo)
    return parser


def _address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded/local)")


def cmd_validate(args) -> int:
    from shardline.spec import load_spec

    spec = load_spec(args.spec)
    say(f"{args.spec}: ok ({len(spec.models)} model(s): {', '.join(m.name for m in spec.models)})")
    return 0


def cmd_schema(args) -> int:
    from shardline.spec.schema import write_schema

    say(str(write_schema(args.dir)))
    return 0


def cmd_build_tiny(args) -> int:
    from shardline.models.tiny import build_tiny_models

    for path in build_tiny_models(args.dir, force=args.force):
        say(str(path))
    return 0


def cmd_train_tiny(args) -> int:
    from shardline.models.train import train_all

    train_all(args.dir, args.tier, log=say)
    return 0


def cmd_quantize(args) -> int:
    from shardline_kernels.int8.checkpoint import CheckpointError, quantize_checkpoint

    try:
        counts = quantize_checkpoint(args.src, args.dst)
    except CheckpointError as exc:
        warn(f"error: {exc}")
        return 2
    say(f"{args.dst}: {counts['quantized']} tensors quantized to int8, {counts['kept']} kept")
    return 0


def cmd_eval(args) -> int:
    import json

    from shardline.models.evaluate import evaluate

    lengths = [int(x) for x in args.lengths.split(",")]
    cells = evaluate(args.target, args.model, lengths, args.items)
    rows = [(c.model, c.context_words, c.items, f"{c.accuracy:.2f}", c.tokens_per_s) for c in cells]
    say(table(["model", "context words", "items", "accuracy", "tokens/s"], rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"target": args.target, "cells": [c.as_dict() for c in cells]}, f, indent=2)
            f.write("\n")
        say(f"wrote {args.out}")
    return 0


def cmd_up(args) -> int:
    from shardline.serve import lifecycle
    from shardline.spec import load_spec

    spec = load_spec(args.spec)
    embedded = lifecycle.connect(args.address, spec)
    endpoint = lifecycle.deploy(spec, args.timeout, progress=lambda line: say(f"  {line}"))
    say(f"{spec.name}: SERVING on {endpoint.target}")
    if embedded:
        say("embedded Ray cluster: serving until Ctrl-C or SIGTERM")
        _wait_for_signal()
        from ray import serve

        serve.shutdown()
    return 0


def cmd_down(args) -> int:
    from shardline.serve import lifecycle

    lifecycle.attach(args.address)
    lifecycle.undeploy(args.name)
    say(f"{args.name}: removed")
    return 0


def cmd_status(args) -> int:
    from ray import serve

    from shardline.serve import lifecycle
    from shardline.serve.backend import enum_value, running_replicas

    lifecycle.attach(args.address)
    app = serve.status().applications.get(args.name)
    if app is None:
        warn(f"no application named {args.name!r} on this cluster")
        return 1
    endpoint = lifecycle.router_endpoint(args.name)
    rows = []
    for name, dep in sorted(app.deployments.items()):
        running = f"{running_replicas(dep)}/{sum(dep.replica_states.values())}"
        rows.append((name, enum_value(dep.status), running, endpoint.target if name == "router" else ""))
    say(f"application {args.name}: {enum_value(app.status)}")
    say(table(["deployment", "health", "running", "endpoint"], rows))
    return 0


def cmd_generate(args) -> int:
    from shardline.client import Client

    sampling = {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "seed": args.seed,
        "stop": args.stop,
    }
    with Client(args.target) as client:
        last = None
        for chunk in client.stream(args.model, args.prompt, timeout=args.timeout, **sampling):
            say(printable(chunk.text), end="")
            last = chunk
    say()
    if last is not None:
        warn(f"[{last.finish_reason}; prompt {last.usage.prompt_tokens} tokens, "
             f"completion {last.usage.completion_tokens} tokens; id {last.request_id}]")
    return 0


def cmd_demo(args) -> int:
    from shardline.cli.demo import run_demo
    from shardline.spec import load_spec

    results = run_demo(load_spec(args.spec), args.timeout)
    return 0 if results and all(r.tokens > 0 for r in results) else 1


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


if __name__ == "__main__":
    sys.exit(main())
