"""Every committed spec validates, and the exported schema matches the model."""

from pathlib import Path

import pytest

from shardline.spec import load_spec
from shardline.spec.schema import SCHEMA_FILE, render_schema

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"


@pytest.mark.parametrize("path", sorted(DEPLOYMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_committed_spec_is_valid(path):
    assert load_spec(path).models


def test_exported_schema_has_not_drifted():
    committed = (DEPLOYMENTS / SCHEMA_FILE).read_text()
    assert committed == render_schema(), "spec schema changed: run `make schema` and commit"


def test_demo_serves_gemma_with_tensor_parallel_two():
    spec = load_spec(DEPLOYMENTS / "demo.yaml")
    assert spec.models[0].parallelism.tensor == 2
