"""Deployment commands: `up`, `submit` and `render` put a spec on a Ray cluster (or
into a Serve config file); `down` and `status` act on a running application."""

from __future__ import annotations

import argparse
import signal
import threading

from shardline.cli.output import say, table, warn
from shardline.errors import ShardlineError

DEFAULT_APP = "shardline"
"""The application name of a spec without `name` (DeploymentSpec.name's default)."""


def register(sub: argparse._SubParsersAction) -> None:
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


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _drain_and_shut_down(spec) -> None:
    """Drain before the embedded cluster goes down with this process: the router reports
    NOT_SERVING and refuses new calls, live streams finish (up to the drain timeout),
    then the app is removed. A second signal stops at once (default handlers again)."""
    from ray import serve

    from shardline.serve import lifecycle

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    say(f"{spec.name}: draining (live streams get up to {spec.rollout.drain_timeout_s:g} s; signal again to stop now)")
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
        drain = (
            f"only {removal.drained} of {removal.routers} router replicas confirmed draining: "
            "streams on the others may have been cut"
        )
    return f"{app}: removed after {removal.seconds:.1f} s ({drain})"


def cmd_status(args) -> int:
    from shardline.cli.engine_view import HEADERS, engine_row
    from shardline.serve import lifecycle
    from shardline.serve.deployment_handles import LLM_PREFIX, enum_value, running_replicas

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
    reports = lifecycle.engine_reports(name, [d for d in app.deployments if d.startswith(LLM_PREFIX)])
    say("engines (as each reports what it runs):")
    say(table(HEADERS, [engine_row(d.removeprefix(LLM_PREFIX), info) for d, info in sorted(reports.items())]))
    return 0
