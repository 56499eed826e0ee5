"""`shardline submit`: the spec is validated here before anything is sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shardline.errors import ShardlineError
from shardline.serve.job_submit import up_entrypoint

ROOT = Path(__file__).resolve().parents[2]


def test_invalid_spec_fails_before_contacting_the_cluster(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: m\n    path: /m\n    parallelism: {tensor: 3, expert: 2}\n")
    # Port 9 (discard) on localhost: any attempt to submit would fail with a connection error instead.
    command = [
        sys.executable,
        "-m",
        "shardline.cli.main",
        "submit",
        str(bad),
        "--address",
        "http://127.0.0.1:9",
        "--working-dir",
        str(tmp_path),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "invalid deployment spec" in run.stderr
    assert "expert (2) must be 1 or equal to tensor (3)" in run.stderr
    assert "onnect" not in run.stderr  # no connection was attempted


def test_entrypoint_runs_up_on_the_spec_relative_to_the_working_dir():
    entry = up_entrypoint(ROOT / "deployments/demo.yaml", ROOT, 300)
    assert entry == "shardline up deployments/demo.yaml --timeout 300"


def test_spec_outside_the_working_dir_is_refused(tmp_path):
    with pytest.raises(ShardlineError, match="is not inside the working directory"):
        up_entrypoint(ROOT / "deployments/demo.yaml", tmp_path, 300)
