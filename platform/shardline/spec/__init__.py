"""The deployment spec: the typed DeploymentSpec (deployment.py), YAML loading with line numbers, schema export."""

from shardline.spec.deployment import (
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
from shardline.spec.loader import load_spec, parse_spec, validate_spec

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
