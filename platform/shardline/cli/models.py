"""Commands on model artifacts: build and train the tiny models, prepare the pretrained ones, sign and verify a
model directory, quantize a checkpoint, measure accuracy through a running router."""

from __future__ import annotations

import argparse
import os

from shardline.cli.output import say, table, warn
from shardline.errors import IntegrityError


def register(sub: argparse._SubParsersAction) -> None:
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
    r = models.add_parser(
        "build-pretrained", help="fetch, check and convert SmolLM2-135M-Instruct and Gemma 3 270M into DIR (cached)"
    )
    r.add_argument("dir")
    r.add_argument("--force", action="store_true", help="rebuild even when present")
    r.set_defaults(func=cmd_build_pretrained)
    _register_signing(sub)

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


def _register_signing(sub: argparse._SubParsersAction) -> None:
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


def cmd_build_pretrained(args) -> int:
    from shardline.models.pretrained import prepare_pretrained

    for path in prepare_pretrained(args.dir, force=args.force):
        say(str(path))
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
