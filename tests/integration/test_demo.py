"""`shardline demo` end to end in a subprocess: its own embedded cluster, TP=2."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_streams_real_tokens_and_exits_zero(tiny_models):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "shardline.cli.main", "demo", "deployments/demo.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "router SERVING at" in run.stdout and "(TP=2, PP=1)" in run.stdout
    table = run.stdout.split("TTFT ms")[1]
    assert table.count(" 32 ") >= 3  # every demo prompt streamed its 32 tokens
