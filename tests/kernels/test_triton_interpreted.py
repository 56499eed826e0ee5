"""Runs the Triton parity tests (interpreted/) in Triton's CPU interpreter, in a fresh process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

INTERPRETED = Path(__file__).parent / "interpreted"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, interpreted/ is collected and runs on it directly")
def test_triton_kernels_match_their_references_in_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(INTERPRETED)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=INTERPRETED.parents[2],
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1]
