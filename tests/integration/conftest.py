"""The real stack, started once per session: a local Ray cluster, Ray Serve, the
router, and vLLM serving deployments/kv-tiers.yaml (the trained kv-large tier with tensor
parallelism 2 and kv-small with one worker) on an ephemeral port. Engine start is
the expensive part (~40 s), so every integration test shares this one deployment.
Its models are signed copies that the replicas verify before loading.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import ray
import yaml
from ray import serve

from live import ROOT, Deployment, demo_app, deployed
from shardline.models.tiny import build_tiny_models
from shardline.security.integrity import generate_key, sign_model
from shardline.serve import lifecycle
from shardline.spec import load_spec

APP = "shardline-it"
PRETRAINED_APP = "shardline-pretrained-it"
SPARE_CPUS = 12
"""Logical CPUs beside the session deployment for the apps tests deploy themselves
(`pretrained`, `deployed`): reservations, not cores."""


@pytest.fixture(scope="session")
def tiny_models() -> Path:
    directory = ROOT / ".cache" / "models"
    build_tiny_models(directory)
    return directory


@pytest.fixture(scope="session")
def ray_cluster() -> None:
    """The embedded Ray cluster the in-process integration tests share: logical CPUs
    for kv-tiers.yaml plus SPARE_CPUS, so a module can deploy its own small app beside it
    (it must delete that app when it ends)."""
    lifecycle.connect(None, load_spec(ROOT / "deployments" / "kv-tiers.yaml"), spare_cpus=SPARE_CPUS)
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def deployment(ray_cluster, tmp_path_factory) -> Deployment:
    data = yaml.safe_load((ROOT / "deployments" / "kv-tiers.yaml").read_text())
    data["name"] = APP
    data["router"]["port"] = 0
    data["router"]["http_port"] = 0
    signed = tmp_path_factory.mktemp("signed")
    public = generate_key(signed / "signing.key")
    for model in data["models"]:
        # Replicas verify a signed copy of each model before loading it: the whole
        # suite runs on the integrity-checked path.
        copy = shutil.copytree(ROOT / model["path"], signed / model["name"])
        sign_model(copy, signed / "signing.key")
        model.update(path=str(copy), integrity={"public_key": public})
    with deployed(data) as live:
        yield live


@pytest.fixture(scope="module")
def pretrained(ray_cluster) -> Deployment:
    """deployments/demo.yaml: the real pretrained models (Gemma 3 270M at TP=2,
    SmolLM2-135M-Instruct), verified against the manifest `make models` signed.
    Per module: three more engines stay up only while the module that needs them runs."""
    data = demo_app(PRETRAINED_APP)
    with deployed(data) as live:
        yield live
