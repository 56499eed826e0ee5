"""Render the chart with Helm's own engine and check every object it produces.

helm-python-sdk binds Helm's Go library (no `helm` binary): rendering applies
values.schema.json and the templates exactly as `helm install` would. Core
objects are checked against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail); custom resources against their CRDs kept in
crds/ (see crds/README.md), made strict the same way.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parents[1] / "helm" / "shardline"
VALUES = HERE / "values"
KUBERNETES_VERSION = "1.33.0"
CRDS = {
    ("ray.io/v1", "RayService"): "ray.io_rayservices.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values or {}, name="demo", namespace="serving")
    texts = [text for path, text in manifests.items() if path.endswith(".yaml")]
    return [obj for text in texts for obj in yaml.safe_load_all(text) if obj]


def values_file(name: str) -> dict[str, Any]:
    return yaml.safe_load((VALUES / name).read_text())


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def validate(obj: dict[str, Any]) -> None:
    """Raise if `obj` is not a valid object of its kind (unknown fields included)."""
    crd = CRDS.get((obj["apiVersion"], obj["kind"]))
    if crd is None:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    else:
        crd_validator(crd).validate(obj)


@functools.cache
def crd_validator(filename: str) -> jsonschema.Validator:
    crd = yaml.safe_load((HERE / "crds" / filename).read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def strict(schema: Any) -> Any:
    """Close every object that lists its properties, as the API server's strict
    field validation does (a CRD schema alone would let a misspelled field through)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def worker_groups(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
