"""The Helm chart's values.schema.json: chart settings plus the embedded spec schema.

`values.spec` is checked by the very schema exported to
deployments/deploymentspec.schema.json (its `$defs` lifted to the root so its
`$ref`s resolve), so Helm and Python share one contract. Every object is closed
(`additionalProperties: false`): a typo in values fails `helm install`.
Kubernetes-shaped values (security contexts, peers, tolerations) are only
checked for their JSON type here; the rendered objects are checked against the
Kubernetes schemas by the chart tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shardline.spec.schema import spec_json_schema

SCHEMA_FILE = "values.schema.json"
QUANTITY = {"type": ["string", "number"], "pattern": r"^[0-9.]+[A-Za-z]*$"}
K8S_NAME = {"type": "string", "pattern": r"^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}


def closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object with exactly these keys (all required unless `required` says)."""
    keys = list(properties) if required is None else required
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": keys}


def free_object() -> dict[str, Any]:
    return {"type": "object"}


def string(**extra: Any) -> dict[str, Any]:
    return {"type": "string", **extra}


def chart_properties() -> dict[str, Any]:
    return {
        "image": closed(
            {
                "repository": string(minLength=1),
                "tag": string(pattern=r"^$|^[\w][\w.-]{0,127}$"),
                "pullPolicy": string(enum=["Always", "IfNotPresent", "Never"]),
            }
        ),
        "imagePullSecrets": {"type": "array", "items": free_object()},
        "rayVersion": string(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$"),
        "head": closed({"resources": free_object()}),
        "router": closed(
            {
                "memory": QUANTITY,
                "placementResource": string(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$"),
                "service": closed(
                    {
                        "type": string(enum=["ClusterIP", "NodePort", "LoadBalancer"]),
                        "annotations": {"type": "object", "additionalProperties": string()},
                    }
                ),
            }
        ),
        "engine": closed({"memory": QUANTITY, "shmSize": QUANTITY, "gpuResource": string(minLength=1)}),
        "modelVolume": closed({"claimName": K8S_NAME, "mountPath": string(pattern=r"^/")}),
        "otel": closed(
            {
                "endpoint": string(pattern=r"^$|^https?://"),
                "protocol": string(enum=["grpc", "http"]),
                "serviceName": string(minLength=1, maxLength=128),
            }
        ),
        "auth": closed({"existingSecret": K8S_NAME, "key": string(pattern=r"^[-._a-zA-Z0-9]+$")}),
        "metrics": closed(
            {
                "rayPort": {"type": "integer", "minimum": 1, "maximum": 65535},
                "serviceMonitor": closed(
                    {
                        "enabled": {"type": "boolean"},
                        "interval": string(pattern=r"^[0-9]+(ms|s|m|h)$"),
                        "labels": {"type": "object", "additionalProperties": string()},
                    }
                ),
            }
        ),
        "networkPolicy": closed(
            {
                "enabled": {"type": "boolean"},
                **{k: {"type": "array", "items": free_object()} for k in ("routerFrom", "metricsFrom", "operatorFrom")},
            }
        ),
        # Non-root is not a default but a rule of the chart.
        "podSecurityContext": {
            "type": "object",
            "required": ["runAsNonRoot"],
            "properties": {"runAsNonRoot": {"const": True}},
        },
        "securityContext": free_object(),
        "nodeSelector": {"type": "object", "additionalProperties": string()},
        "tolerations": {"type": "array", "items": free_object()},
    }


def chart_values_schema() -> dict[str, Any]:
    spec = spec_json_schema()
    defs = spec.pop("$defs")
    spec.pop("$schema")
    schema = closed({"spec": spec, **chart_properties()})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Shardline Helm chart values",
        **schema,
        "$defs": defs,
    }


def render_chart_schema() -> str:
    return json.dumps(chart_values_schema(), indent=2, sort_keys=True) + "\n"


def write_chart_schema(chart_dir: str | Path) -> Path:
    target = Path(chart_dir) / SCHEMA_FILE
    target.write_text(render_chart_schema())
    return target
