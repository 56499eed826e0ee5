"""`shardline demo` end to end in a subprocess: its own embedded cluster, TP=2."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_answers_with_both_tiers_and_exits_zero():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "shardline.cli.main", "demo", "deployments/demo.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "router SERVING at" in run.stdout and "kv-large (TP=2, PP=1)" in run.stdout
    table = run.stdout.split("TTFT ms")[1].splitlines()[2:]
    assert sum(row.startswith("kv-large") for row in table) == 6
    assert sum(row.startswith("kv-small") for row in table) == 6
    assert any(row.rstrip().endswith("yes") for row in table)  # trained models answer
    ids = re.findall(r"\(trace ([0-9a-f]{32})\)", run.stdout)  # one per request
    assert len(set(ids)) == 12
    tree = subprocess.run(
        [sys.executable, "-m", "shardline.cli.main", "trace", "--last"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tree.returncode == 0, tree.stderr
    assert tree.stdout.startswith(f"trace {ids[-1]}: 8 spans, 2 processes")
    for span in (
        "shardline.v1.Inference/GenerateStream",
        "router.admission",
        "router.compression",
        "router.decoding_plan",
        "router.cascade_attempt",
        "router.replica_call",
        "replica.generate",
        "llm_request",
    ):
        assert span in tree.stdout
