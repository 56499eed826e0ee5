"""Fault scenarios at full size against a real deployment, scored by outcome accounting.

    .venv/bin/python bench/faults.py                       # every scenario, deployments/faults.yaml
    .venv/bin/python bench/faults.py --scenario replica_kill --requests 400

Deploys the spec on an embedded Ray cluster, runs each scenario from
`shardline.faults` (the tests run the same functions at bounded sizes), prints
one table row per scenario (verdict counts, untyped statuses, latency) plus the
scenario's own figures, and writes bench/results/faults.json. LOST and CORRUPT
must be 0 in every row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from stack import ROOT, deployed

from shardline.faults.replica_kill import replica_kill
from shardline.outcomes import table
from shardline.spec import load_spec


def scenarios(target: str, app: str, model: str, args) -> dict:
    """name -> coroutine factory; each returns {"fault": tally, ...figures}."""
    return {
        "replica_kill": lambda: replica_kill(target, app, model, requests=args.requests,
                                             concurrency=args.concurrency, max_tokens=args.max_tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=ROOT / "deployments" / "faults.yaml", type=Path)
    parser.add_argument("--scenario", action="append", help="run only these (repeatable)")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "faults.json")
    args = parser.parse_args()
    spec = load_spec(args.spec)
    results = {}
    with deployed(args.spec) as target:
        runs = scenarios(target, spec.name, spec.models[0].name, args)
        for name in args.scenario or list(runs):
            results[name] = asyncio.run(runs[name]())
            print(f"{name}: " + json.dumps({k: v for k, v in results[name].items() if not isinstance(v, dict)}))
    rows = {f"{name} ({part})": r[part] for name, r in results.items() for part in ("baseline", "fault") if part in r}
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
