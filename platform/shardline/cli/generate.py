"""`shardline generate`: stream one completion from a running router to the terminal."""

from __future__ import annotations

import argparse
import os

import grpc

from shardline.cli.output import printable, say, warn


def register(sub: argparse._SubParsersAction) -> None:
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


def _router_access(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--token",
        default=os.environ.get("SHARDLINE_TOKEN"),
        help="bearer token when the router requires auth (default: SHARDLINE_TOKEN)",
    )
    p.add_argument("--ca", help="PEM CA bundle: connect with TLS and trust this CA")
    p.add_argument("--cert", help="PEM client certificate (mutual TLS; with --key)")
    p.add_argument("--key", help="PEM private key of --cert")


def client_options(args) -> dict:
    """`Client` keyword arguments from the --token/--ca/--cert/--key flags."""
    credentials = None
    if args.ca:
        credentials = grpc.ssl_channel_credentials(
            _read(args.ca), args.key and _read(args.key), args.cert and _read(args.cert)
        )
    return {"token": args.token, "credentials": credentials}


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


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
        warn(
            f"[{last.finish_reason}; prompt {last.usage.prompt_tokens} tokens, "
            f"completion {last.usage.completion_tokens} tokens; id {last.request_id}]"
        )
    return 0
