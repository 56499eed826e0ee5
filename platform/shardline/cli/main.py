"""`shardline`: validate, deploy and talk to Shardline deployments."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import grpc

from shardline.cli.output import printable, say, table, warn
from shardline.errors import IntegrityError, ShardlineError

DEFAULT_APP = "shardline"
"""The application name of a spec without `name` (DeploymentSpec.name's default)."""


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
    p.add_argument("--chart", help="also write the Helm chart's values.schema.json into this chart directory")
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

    p = sub.add_parser("keygen", help="write a new Ed25519 signing key to KEY; print its public key")
    p.add_argument("key", help="private key file to create (PEM, mode 0600)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign", help="write a signed manifest (sha256 of every file) into MODEL_DIR")
    p.add_argument("model_dir")
    p.add_argument("--key", required=True, help="Ed25519 private key file (from `shardline keygen`)")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("verify", help="check MODEL_DIR against its signed manifest")
    p.add_argument("model_dir")
    p.add_argument("--public-key", required=True, help="base64 public key, or a file holding it")
    p.set_defaults(func=cmd_verify)
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

    p = sub.add_parser("submit", help="run `shardline up SPEC` as a Ray job (validated here first)")
    p.add_argument("spec")
    p.add_argument("--address", required=True, help="Ray dashboard address, e.g. http://127.0.0.1:8265")
    p.add_argument("--working-dir", default=".", help="uploaded as the job's working_dir; must contain SPEC")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds `up` waits for health")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("render", help="render a spec into another tool's format")
    render = p.add_subparsers(required=True, metavar="FORMAT")
    r = render.add_parser("serve-config", help="Ray Serve config file for `serve deploy`")
    r.add_argument("spec")
    r.add_argument("-o", "--out", help="write here instead of stdout")
    r.set_defaults(func=cmd_render_serve_config)

    p = sub.add_parser("down", help="drain and remove a deployment (live streams finish first)")
    _application(p)
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="models, replicas, health and endpoint")
    _application(p)
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
    _router_access(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("trace", help="print one request's span tree from the local trace store")
    p.add_argument("trace_id", nargs="?", help="the id the router returned (32 hex digits)")
    p.add_argument("--last", action="store_true", help="the newest request instead")
    p.add_argument("--spec", help="read telemetry.trace_dir from this spec (default: the default store)")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("demo", help="embedded cluster: deploy, stream a few generations, report, shut down")
    p.add_argument("spec")
    p.add_argument("--timeout", type=float, default=600.0)
    p.set_defaults(func=cmd_demo)
    return parser


def _address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded/local)")


def _application(p: argparse.ArgumentParser) -> None:
    """Which application a command acts on: a spec file's `name`, or --name."""
    p.add_argument("spec", nargs="?", help="deployment spec: the application is its `name`")
    p.add_argument("--name", help=f"application name (spec's `name`; default {DEFAULT_APP!r})")
    _address(p)


def application_name(args) -> str:
    """The spec file's `name`, else --name, else the spec's default name."""
    if args.spec is None:
        return args.name or DEFAULT_APP
    from shardline.spec import load_spec

    name = load_spec(args.spec).name
    if args.name and args.name != name:
        raise ShardlineError(f"--name {args.name!r} is not the name in {args.spec} ({name!r}): give one of them")
    return name


def _router_access(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", default=os.environ.get("SHARDLINE_TOKEN"),
                   help="bearer token when the router requires auth (default: SHARDLINE_TOKEN)")
    p.add_argument("--ca", help="PEM CA bundle: connect with TLS and trust this CA")
    p.add_argument("--cert", help="PEM client certificate (mutual TLS; with --key)")
    p.add_argument("--key", help="PEM private key of --cert")


def client_options(args) -> dict:
    """`Client` keyword arguments from the --token/--ca/--cert/--key flags."""
    credentials = None
    if args.ca:
        def read(path):
            with open(path, "rb") as f:
                return f.read()

        credentials = grpc.ssl_channel_credentials(
            read(args.ca), args.key and read(args.key), args.cert and read(args.cert)
        )
    return {"token": args.token, "credentials": credentials}


def cmd_validate(args) -> int:
    from shardline.spec import load_spec

    spec = load_spec(args.spec)
    say(f"{args.spec}: ok ({len(spec.models)} model(s): {', '.join(m.name for m in spec.models)})")
    return 0


def cmd_schema(args) -> int:
    from shardline.spec.schema import write_schema

    say(str(write_schema(args.dir)))
    if args.chart:
        from shardline.spec.chart_schema import write_chart_schema

        say(str(write_chart_schema(args.chart)))
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


def cmd_keygen(args) -> int:
    from shardline.security.integrity import generate_key

    public = generate_key(args.key)
    with open(f"{args.key}.pub", "w") as f:
        f.write(public + "\n")
    say(f"private key: {args.key}\npublic key ({args.key}.pub): {public}")
    return 0


def cmd_sign(args) -> int:
    from shardline.security.integrity import MANIFEST, sign_model

    manifest = sign_model(args.model_dir, args.key)
    say(f"signed {len(manifest['files'])} files: {os.path.join(args.model_dir, MANIFEST)}")
    return 0


def cmd_verify(args) -> int:
    from shardline.security.integrity import verify_model

    key = args.public_key
    if os.path.isfile(key):
        with open(key) as f:
            key = f.read()
    try:
        manifest = verify_model(args.model_dir, key)
    except ValueError as exc:  # an unparsable key
        raise IntegrityError(str(exc)) from None
    say(f"{args.model_dir}: ok ({len(manifest['files'])} files match the signed manifest)")
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
    if endpoint.http_base_url:
        say(f"{spec.name}: OpenAI-compatible HTTP on {endpoint.http_base_url}")
    if embedded:
        say("embedded Ray cluster: serving until Ctrl-C or SIGTERM")
        _wait_for_signal()
        _drain_and_shut_down(spec)
    return 0


def _drain_and_shut_down(spec) -> None:
    """Drain before the embedded cluster goes down with this process: the router reports
    NOT_SERVING and refuses new calls, live streams finish (up to the drain timeout),
    then the app is removed. A second signal stops at once (default handlers again)."""
    from ray import serve

    from shardline.serve import lifecycle

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    say(f"{spec.name}: draining (live streams get up to {spec.rollout.drain_timeout_s:g} s; "
        "signal again to stop now)")
    say(removed_line(spec.name, lifecycle.undeploy(spec.name)))
    serve.shutdown()


def cmd_submit(args) -> int:
    from shardline.serve.job_submit import submit

    job_id = submit(args.spec, args.address, args.working_dir, args.timeout, log=lambda text: say(text, end=""))
    say(f"job {job_id} succeeded")
    return 0


def cmd_render_serve_config(args) -> int:
    from shardline.serve.serve_config import render_serve_config
    from shardline.spec import load_spec

    text = render_serve_config(load_spec(args.spec), args.spec)
    if not args.out:
        say(text, end="")
        return 0
    with open(args.out, "w") as f:
        f.write(text)
    say(f"wrote {args.out}")
    return 0


def cmd_down(args) -> int:
    from shardline.serve import lifecycle

    name = application_name(args)
    lifecycle.attach(args.address)
    try:
        lifecycle.application_status(name)
    except lifecycle.NoSuchApplication as exc:
        warn(str(exc))
        return 1
    say(removed_line(name, lifecycle.undeploy(name)))
    return 0


def removed_line(app: str, removal) -> str:
    """What `undeploy` did, claiming a drain only where the routers confirmed one."""
    if removal.routers is None:
        drain = "its routers could not be asked to drain: live streams may have been cut"
    elif removal.routers == 0:
        drain = "no router replica was running: nothing to drain"
    elif removal.drained == removal.routers:
        drain = "live streams drained first"
    else:
        drain = (f"only {removal.drained} of {removal.routers} router replicas confirmed draining: "
                 "streams on the others may have been cut")
    return f"{app}: removed after {removal.seconds:.1f} s ({drain})"


def cmd_status(args) -> int:
    from shardline.serve import lifecycle
    from shardline.serve.deployment_handles import enum_value, running_replicas

    name = application_name(args)
    lifecycle.attach(args.address)
    try:
        app = lifecycle.application_status(name)
    except lifecycle.NoSuchApplication as exc:
        warn(str(exc))
        return 1
    endpoint = lifecycle.router_endpoint(name)
    rows = []
    for deployment, dep in sorted(app.deployments.items()):
        running = f"{running_replicas(dep)}/{sum(dep.replica_states.values())}"
        rows.append((deployment, enum_value(dep.status), running, endpoint.target if deployment == "router" else ""))
    say(f"application {name}: {enum_value(app.status)}")
    if endpoint.http_base_url:
        say(f"OpenAI-compatible HTTP: {endpoint.http_base_url}")
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
    with Client(args.target, **client_options(args)) as client:
        last = None
        for chunk in client.stream(args.model, args.prompt, timeout=args.timeout, **sampling):
            say(printable(chunk.text), end="")
            last = chunk
    say()
    if last is not None:
        warn(f"[{last.finish_reason}; prompt {last.usage.prompt_tokens} tokens, "
             f"completion {last.usage.completion_tokens} tokens; id {last.request_id}]")
    return 0


def cmd_trace(args) -> int:
    from shardline.spec import TelemetrySpec, load_spec
    from shardline.telemetry import store
    from shardline.telemetry.tree import render_trace

    if bool(args.trace_id) == args.last:
        warn("error: give either a TRACE_ID or --last")
        return 2
    directory = (load_spec(args.spec).telemetry if args.spec else TelemetrySpec()).trace_dir
    spans = store.read_spans(directory)
    trace_id = args.trace_id or store.last_request_trace(spans)
    for line in render_trace(store.trace_spans(spans, trace_id)):
        say(line)
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
