"""`shardline`: validate, deploy and talk to Shardline deployments."""

from __future__ import annotations

import argparse
import logging
import sys

import grpc

from shardline.cli import demo, deploy, generate, models, spec, trace
from shardline.cli.output import warn
from shardline.errors import ShardlineError

COMMAND_GROUPS = (spec, models, deploy, generate, trace, demo)
"""Each module registers its commands beside their handlers; this order is `--help`'s."""


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
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
