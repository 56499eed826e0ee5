"""`shardline validate` and `shardline schema`: check a spec; export its JSON schema."""

from __future__ import annotations

import argparse

from shardline.cli.output import say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="validate a deployment spec")
    p.add_argument("spec")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="write the spec's JSON schema into DIR")
    p.add_argument("dir")
    p.add_argument("--chart", help="also write the Helm chart's values.schema.json into this chart directory")
    p.set_defaults(func=cmd_schema)


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
