"""A live Shardline deployment on the integration tests' Ray cluster: the handle the
session's `deployment` fixture yields (tests/integration/conftest.py), and `deployed`
for tests that deploy an app of their own beside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from ray import serve

from shardline.client import Client
from shardline.serve import lifecycle
from shardline.serve.deployment_handles import llm_deployment_name
from shardline.spec import DeploymentSpec, validate_spec

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_TIMEOUT_S = 600


@dataclass
class Deployment:
    spec: DeploymentSpec
    target: str
    http_url: str = ""
    """Base URL of the router's OpenAI-compatible HTTP API (`.../v1`)."""

    @property
    def model(self) -> str:
        return self.spec.models[0].name

    @property
    def models(self) -> list[str]:
        return [m.name for m in self.spec.models]

    def replica(self, model: str | None = None):
        """A handle on the replicas of `model` (default: the first)."""
        return serve.get_deployment_handle(llm_deployment_name(model or self.model), app_name=self.spec.name)

    def client(self) -> Client:
        return Client(self.target)


@contextlib.contextmanager
def deployed(data: dict):
    """Deploy one more app from a spec dict (its own `name`; router port 0) on the
    session's cluster (depend on `ray_cluster`), for tests that break things;
    removed afterwards."""
    spec = validate_spec({**data, "router": {**data.get("router", {}), "port": 0}})
    try:
        endpoint = lifecycle.deploy(spec, DEPLOY_TIMEOUT_S)
        http = f"http://127.0.0.1:{endpoint.http_port}/v1" if endpoint.http_port is not None else ""
        yield Deployment(spec, f"127.0.0.1:{endpoint.port}", http)
    finally:
        if spec.name in serve.status().applications:  # a test may have removed it itself
            lifecycle.undeploy(spec.name)


def demo_app(name: str) -> dict:
    """deployments/demo.yaml as an app named `name` (router on port 0): the real pretrained
    models (`make models` prepares them), verified against the manifest it signed."""
    from shardline.models.pretrained import prepare_pretrained, signing_public_key

    cache = ROOT / ".cache" / "models"
    prepare_pretrained(cache)
    data = yaml.safe_load((ROOT / "deployments" / "demo.yaml").read_text())
    data.update(name=name, router={**data["router"], "port": 0, "http_port": 0})
    for model in data["models"]:
        model.update(path=str(ROOT / model["path"]), integrity={"public_key": signing_public_key(cache)})
    return data


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PRETRAINED_MODELS = ("gemma-3-270m", "smollm2-135m-instruct")


def doc_examples(pretrained: bool) -> list[tuple[str, str]]:
    """(name, code) of every ```python block in README.md and docs/*.md that names a
    pretrained model (served by demo.yaml) or, with `pretrained` false, none (served
    by kv-tiers.yaml). Code not meant to run goes in a fence without the `python` tag."""
    blocks = [
        (f"{doc.relative_to(ROOT).as_posix()}:{i}", code)
        for doc in DOCS
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S))
    ]
    return [(name, code) for name, code in blocks if any(m in code for m in PRETRAINED_MODELS) == pretrained]


def run_doc_example(deployment: Deployment, code: str) -> None:
    """Runs one example against `deployment`; each shows the deployment answering:
    gRPC blocks print the health status, the OpenAI-client block the retrieved code."""
    env = {**os.environ, "SHARDLINE_TARGET": deployment.target, "SHARDLINE_HTTP_URL": deployment.http_url}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert ("4 8 2 1" if "import openai" in code else "SERVING") in run.stdout, run.stdout[-2000:]
