"""Fault scenarios at full size against real deployments, scored by outcome accounting.

    .venv/bin/python bench/faults.py                        # every scenario
    .venv/bin/python bench/faults.py --scenario replica_kill --requests 400

Starts an embedded Ray cluster and deploys `deployments/faults.yaml` (two
replicas: kills, engine death, stuck engine), a one-replica variant with
bounded queues and an 8 s default deadline (overload, cancel storm, deadlines),
and a two-replica variant with 100% surge that goes through its whole life:
a rolling update, a failing update, then `shardline down` with live streams.
Each scenario is a drill from `shardline.faults` (the tests run the same ones at
bounded sizes: `make test`; these full sizes: `make drills`). Prints one table row
per phase (verdict counts, untyped statuses, latency) and each scenario's own figures; writes bench/results/faults.json.
LOST and CORRUPT must be 0 in every row.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from pathlib import Path

import grpc
import yaml
from ray import serve

from shardline.client import make_request
from shardline.faults.cancel_storm import cancel_storm
from shardline.faults.deadlines import deadlines
from shardline.faults.drain import drain_under_load
from shardline.faults.overload import overload
from shardline.faults.probes import serve_probe
from shardline.faults.replica_health import all_engines_dead, engine_death, stuck_replica
from shardline.faults.replica_kill import replica_kill
from shardline.faults.rolling_update import rolling_update
from shardline.faults.workload import greedy_batch, prompts
from shardline.outcomes import table
from shardline.serve import lifecycle
from shardline.spec import validate_spec
from stack import DEPLOY_TIMEOUT_S, ROOT

ONGOING, QUEUED, DEFAULT_CAP_S = 8, 4, 8.0
LONG, MAX_MODEL_LEN = 12000, 12288  # tokens: far past any deadline here (tests/integration/test_faults_load.py)
FAILING_UPDATE_WAIT_S = 60.0


def two_replicas(base: dict) -> dict:
    return base


def one_replica(base: dict) -> dict:
    """Bounded queues and a short default deadline, so load figures mean one replica."""
    model = {
        **base["models"][0],
        "max_model_len": MAX_MODEL_LEN,
        "replicas": {"max_ongoing_requests": ONGOING, "max_queued_requests": QUEUED, "target_ongoing_requests": 1},
    }
    return {
        **base,
        "name": base["name"] + "-load",
        "models": [model],
        "router": {**base["router"], "limits": {"default_deadline_s": DEFAULT_CAP_S, "max_tokens": LONG}},
        "telemetry": {"exporter": "off", "metrics": False},
    }


def updatable(base: dict) -> dict:
    """100% surge: each old replica serves until its replacement is ready."""
    return {**base, "name": base["name"] + "-update", "rollout": {"drain_timeout_s": 30.0, "surge_percent": 100}}


def with_model(data: dict, **fields) -> dict:
    return {**data, "models": [{**data["models"][0], **fields}]}


def update_scenarios(args) -> dict:
    """In this order: the app ends with `down`."""

    def update(d, **fields):
        spec = validate_spec(with_model(d.spec, **fields))
        wait_s = FAILING_UPDATE_WAIT_S if "max_model_len" in fields else DEPLOY_TIMEOUT_S
        return rolling_update(
            d.target,
            d.model,
            lambda: lifecycle.deploy(spec, wait_s),
            concurrency=args.concurrency // 2,
            max_tokens=args.max_tokens,
        )

    return {
        "rolling_update": lambda d: update(d, env={"SHARDLINE_ROLLOUT": "v2"}),
        # vLLM refuses a max_model_len beyond the model's 16384 positions: every new replica fails.
        "failing_update": lambda d: update(d, max_model_len=20000),
        "down": lambda d: drain_under_load(
            d.target,
            d.model,
            lambda: lifecycle.undeploy(d.app),
            streams=args.concurrency,
            max_tokens=4 * args.max_tokens,
        ),
    }


def replica_scenarios(args) -> dict:
    sizes = {"requests": args.requests, "concurrency": args.concurrency, "max_tokens": args.max_tokens}
    return {
        "replica_kill": lambda d: replica_kill(d.target, d.app, d.model, **sizes),
        "engine_death": lambda d: engine_death(d.target, d.app, d.model, **sizes),
        "stuck_replica": lambda d: stuck_replica(d.target, d.app, d.model, **sizes),
        "all_engines_dead": lambda d: all_engines_dead(d.target, d.app, d.model),
    }


def load_scenarios(args) -> dict:
    async def run(d, drill):
        async with grpc.aio.insecure_channel(d.target) as channel:
            return _plain(await drill(channel, serve_probe(d.app, d.model)))

    def stream(model, tokens):
        return lambda rid: make_request(
            model, prompts(1)[0], max_tokens=tokens, temperature=0.0, ignore_eos=True, request_id=rid
        )

    return {
        "overload": lambda d: run(
            d,
            lambda ch, probe: overload(
                ch,
                stream(d.model, args.max_tokens),
                slots=ONGOING,
                factor=3.0,
                duration_s=args.duration_s,
                unloaded_n=8,
                capacity_n=6 * ONGOING,
            ),
        ),
        "cancel_storm": lambda d: run(
            d,
            lambda ch, probe: cancel_storm(
                ch, greedy_batch(d.model, args.requests, args.max_tokens), probe, fraction=0.5, concurrency=ONGOING
            ),
        ),
        "client_deadline": lambda d: run(
            d, lambda ch, probe: deadlines(ch, greedy_batch(d.model, ONGOING, LONG), probe, deadline_s=0.5)
        ),
        "default_cap": lambda d: run(
            d,
            lambda ch, probe: deadlines(
                ch, greedy_batch(d.model, ONGOING, LONG), probe, deadline_s=DEFAULT_CAP_S, client_deadline=False
            ),
        ),
    }


GROUPS = [(two_replicas, replica_scenarios), (one_replica, load_scenarios), (updatable, update_scenarios)]


@dataclasses.dataclass
class Target:
    target: str
    app: str
    model: str
    spec: dict


def _plain(result) -> dict:
    """A drill's result without its per-request records (the tallies keep the counts)."""
    return {f.name: _jsonable(getattr(result, f.name)) for f in dataclasses.fields(result) if f.name != "records"}


def _jsonable(value):
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def tallies(name: str, result: dict) -> dict[str, dict]:
    """Every tally a scenario returned, as table rows."""
    return {
        f"{name} ({key})": value for key, value in result.items() if isinstance(value, dict) and "verdicts" in value
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=ROOT / "deployments" / "faults.yaml", type=Path)
    parser.add_argument("--scenario", action="append", help="run only these (repeatable)")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--duration-s", type=float, default=20.0, help="overload phase length")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "faults.json")
    args = parser.parse_args()
    base = yaml.safe_load(args.spec.read_text())
    base["models"][0]["path"] = str(ROOT / base["models"][0]["path"])
    results, rows = {}, {}
    lifecycle.connect(None, validate_spec(base), spare_cpus=8)
    for variant, scenarios in GROUPS:
        chosen = {k: v for k, v in scenarios(args).items() if not args.scenario or k in args.scenario}
        if not chosen:
            continue
        data = variant(base)
        spec = validate_spec(data)
        endpoint = lifecycle.deploy(spec, DEPLOY_TIMEOUT_S)
        target = Target(endpoint.target, spec.name, spec.models[0].name, data)
        try:
            for name, run in chosen.items():
                results[name] = asyncio.run(run(target))
                rows.update(tallies(name, results[name]))
                figures = {k: v for k, v in results[name].items() if not isinstance(v, dict)}
                print(f"{name}: {json.dumps(figures, default=str)}", flush=True)
        finally:
            if spec.name in serve.status().applications:
                lifecycle.undeploy(spec.name)
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
