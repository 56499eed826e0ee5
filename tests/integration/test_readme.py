"""The README's Python examples run as written against the live deployment."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_example_runs(deployment, code):
    env = {**os.environ, "SHARDLINE_TARGET": deployment.target, "SHARDLINE_HTTP_URL": deployment.http_url}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    # Each block shows the deployment answering: gRPC blocks print the health
    # status, the OpenAI-client block the retrieved code.
    assert ("4 8 2 1" if "import openai" in code else "SERVING") in run.stdout
