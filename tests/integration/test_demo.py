"""`shardline demo` end to end in a subprocess: its own embedded cluster, the real
pretrained models (Gemma 3 270M at TP=2, SmolLM2-135M-Instruct) and their cascade."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("gemma-3-270m", "smollm2-135m-instruct", "auto")
QUESTIONS = 4  # three short answers and one needle in prose (cli/demo.py)


def test_demo_answers_with_both_models_and_the_cascade_and_exits_zero():
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
    assert "router SERVING at" in run.stdout
    # What Gemma's engine reports it runs (ListModels), not the spec: two TP workers.
    assert re.search(r"model gemma-3-270m: TP=2 PP=1 .*workers=2", run.stdout), run.stdout[:3000]
    table = run.stdout.split("TTFT ms")[1].split("\n\n")[0].splitlines()[2:]
    for model in MODELS:
        assert sum(row.split()[0] == model for row in table) == QUESTIONS, table
    # The cascade's answers come from one of its two tiers, and real models get
    # real questions right: 5 of 12 on 2 cores (which ones is for bench/, not a
    # test; a random-weight model gets none).
    cascade = [row for row in table if row.startswith("auto ")]
    assert all(row.rstrip().endswith(("gemma-3-270m", "smollm2-135m-instruct")) for row in cascade), cascade
    assert sum(" yes " in row for row in table) >= 3, table
    assert re.search(r"OpenAI chat, auto: .*\n  .*Paris", run.stdout), run.stdout[-2000:]
    ids = re.findall(r"\(trace ([0-9a-f]{32})\)", run.stdout)  # one per request
    assert len(set(ids)) == QUESTIONS * len(MODELS)
    tree = subprocess.run(
        [sys.executable, "-m", "shardline.cli.main", "trace", ids[-1]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tree.returncode == 0, tree.stderr
    # The cascade's last request: router, then each tier it tried (a replica each).
    assert re.match(rf"trace {ids[-1]}: \d+ spans, [23] processes", tree.stdout), tree.stdout[:300]
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
