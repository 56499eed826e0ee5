"""The deployment spec: typed model, YAML loading with line numbers, schema export."""

from shardline.spec.loader import load_spec, parse_spec, validate_spec
from shardline.spec.model import (
    DeploymentSpec,
    ModelSpec,
    Parallelism,
    Replicas,
    RolloutSpec,
    RouterLimits,
    RouterSpec,
    TelemetrySpec,
    WorkerResources,
)

__all__ = [
    "DeploymentSpec",
    "ModelSpec",
    "Parallelism",
    "Replicas",
    "RolloutSpec",
    "RouterLimits",
    "RouterSpec",
    "TelemetrySpec",
    "WorkerResources",
    "load_spec",
    "parse_spec",
    "validate_spec",
]
