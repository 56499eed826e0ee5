"""The Python examples in the README and docs/ run as written against a live deployment.

Every ```python block in README.md and docs/*.md is one test, named after its file
and its position there. Code that is not meant to run goes in a fence without the
`python` tag. A block that names a pretrained model runs against deployments/demo.yaml
(`pretrained`), any other against the trained tiers (`deployment`, kv-tiers.yaml).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    (f"{doc.relative_to(ROOT).as_posix()}:{i}", code)
    for doc in DOCS
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S))
]


PRETRAINED_MODELS = ("gemma-3-270m", "smollm2-135m-instruct")


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_readme_python_example_runs(request, code):
    uses_pretrained = any(model in code for model in PRETRAINED_MODELS)
    deployment = request.getfixturevalue("pretrained" if uses_pretrained else "deployment")
    env = {**os.environ, "SHARDLINE_TARGET": deployment.target, "SHARDLINE_HTTP_URL": deployment.http_url}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    # Each block shows the deployment answering: gRPC blocks print the health
    # status, the OpenAI-client block the retrieved code.
    assert ("4 8 2 1" if "import openai" in code else "SERVING") in run.stdout
