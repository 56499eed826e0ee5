"""Autoscaling on a real cluster: from zero, load rises and falls, and what it costs.

    .venv/bin/python bench/autoscale.py
    .venv/bin/python bench/autoscale.py --concurrency 12 --max-tokens 128

Starts an embedded Ray cluster, deploys `deployments/autoscale.yaml` (tiny Llama,
min 0, max 2), and runs the drill of `shardline.faults.autoscale`: one request
from zero (held by the router while the first replica starts), closed-loop load
until a second replica runs (and `--settle-s` more), then a trickle until Serve is back to one. Prints the
figures (time to Serve's scale-up decision and to the new replica RUNNING after
load starts, TTFT while scaling and after, time back to one replica) and the
outcome table; writes bench/results/autoscale.json. LOST and CORRUPT must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from pathlib import Path

import yaml

from shardline.faults.autoscale import autoscale_drill
from shardline.outcomes import table
from shardline.serve import lifecycle
from shardline.serve.deployment_handles import llm_deployment_name
from shardline.spec import validate_spec
from stack import DEPLOY_TIMEOUT_S, ROOT

FIGURES = [
    ("cold: first request's TTFT from zero (s)", "cold", "ttft_s"),
    ("rise: load start -> scale-up decision (s)", "rise", "decision_s"),
    ("rise: load start -> new replica RUNNING (s)", "rise", "ready_s"),
    ("rise: TTFT p50 while scaling (s)", "rise", "ttft_while_scaling_p50_s"),
    ("rise: TTFT p99 while scaling (s)", "rise", "ttft_while_scaling_p99_s"),
    ("rise: TTFT p50 at 2 replicas (s)", "rise", "ttft_after_p50_s"),
    ("fall: load drop -> back to 1 replica (s)", "fall", "down_s"),
    ("fall: streams in flight at the scale-down", "fall", "in_flight_at_scale_down"),
]


def figures_table(result) -> str:
    rows = [f"| {'figure':<46} | {'value':>8} |", f"|{'-' * 48}|{'-' * 10}|"]
    for label, phase, key in FIGURES:
        value = getattr(result, phase).get(key)
        shown = "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
        rows.append(f"| {label:<46} | {shown:>8} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=ROOT / "deployments" / "autoscale.yaml", type=Path)
    parser.add_argument("--concurrency", type=int, default=8, help="clients while load rises")
    parser.add_argument("--trickle", type=int, default=2, help="clients while load falls")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--settle-s", type=float, default=20.0, help="load kept on after the new replica runs")
    parser.add_argument("--phase-timeout-s", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "autoscale.json")
    args = parser.parse_args()
    data = yaml.safe_load(args.spec.read_text())
    data["models"][0]["path"] = str(ROOT / data["models"][0]["path"])
    spec = validate_spec(data)
    model = spec.models[0]
    lifecycle.connect(None, spec)
    endpoint = lifecycle.deploy(spec, DEPLOY_TIMEOUT_S)
    try:
        result = asyncio.run(
            autoscale_drill(
                endpoint.target,
                spec.name,
                llm_deployment_name(model.name),
                model.name,
                concurrency=args.concurrency,
                trickle=args.trickle,
                max_tokens=args.max_tokens,
                up_to=model.replicas.max,
                settle_s=args.settle_s,
                phase_timeout_s=args.phase_timeout_s,
            )
        )
    finally:
        lifecycle.undeploy(spec.name)
    print(figures_table(result))
    print(table({"autoscale (all phases)": result.outcomes}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dataclasses.asdict(result), indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
