"""`shardline trace`: print one request's span tree from the local trace store."""

from __future__ import annotations

import argparse

from shardline.cli.output import say, warn


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="print one request's span tree from the local trace store")
    p.add_argument("trace_id", nargs="?", help="the id the router returned (32 hex digits)")
    p.add_argument("--last", action="store_true", help="the newest request instead")
    p.add_argument("--spec", help="read telemetry.trace_dir from this spec (default: the default store)")
    p.set_defaults(func=cmd_trace)


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
