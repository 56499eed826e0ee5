"""Exports the DeploymentSpec JSON schema (the contract Helm values embed too)."""

from __future__ import annotations

import json
from pathlib import Path

from shardline.spec.deployment import DeploymentSpec

SCHEMA_FILE = "deploymentspec.schema.json"


def spec_json_schema() -> dict:
    schema = DeploymentSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def render_schema() -> str:
    return json.dumps(spec_json_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(directory: str | Path) -> Path:
    target = Path(directory) / SCHEMA_FILE
    target.write_text(render_schema())
    return target
