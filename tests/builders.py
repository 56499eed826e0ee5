"""Builders for test inputs: override only what a test is about."""

from __future__ import annotations

import copy
from typing import Any

from shardline.spec import DeploymentSpec, validate_spec
from shardline.v1 import inference_pb2 as pb

BASE_SPEC: dict[str, Any] = {
    "name": "shardline-test",
    "models": [{"name": "tiny-llama", "path": "/models/tiny-llama", "max_model_len": 512}],
    "router": {"port": 0},
}


def spec_dict(**overrides: Any) -> dict[str, Any]:
    """BASE_SPEC with top-level keys replaced; `model=` merges into the first model."""
    data = copy.deepcopy(BASE_SPEC)
    model = overrides.pop("model", None)
    if model:
        data["models"][0].update(model)
    limits = overrides.pop("limits", None)
    if limits:
        data["router"]["limits"] = limits
    data.update(overrides)
    return data


def make_spec(**overrides: Any) -> DeploymentSpec:
    return validate_spec(spec_dict(**overrides))


def make_request(model: str = "tiny-llama", prompt: str = "hello world", **sampling: Any) -> pb.GenerateRequest:
    from shardline.client import make_request as build

    return build(model, prompt, **sampling)
