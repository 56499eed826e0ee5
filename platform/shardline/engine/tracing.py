"""vLLM's tracing switches, set from the process's telemetry configuration.

vLLM emits its per-request `llm_request` span only when `otlp_traces_endpoint`
is set. Its in-process spans go to the provider this process installed first
(shardline.telemetry.tracing), whatever the endpoint; the endpoint (inherited via
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is used only by the engine-core and worker
subprocesses for their start-up spans. With the file exporter there is no
collector for them, so the SDK is switched off in those subprocesses instead of
letting them retry a dead address.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

from shardline.spec.deployment import TelemetrySpec

# Never dialled: with the file exporter the subprocesses' SDK is disabled.
UNUSED_ENDPOINT = "http://127.0.0.1:4317"
OTLP_PROTOCOLS = {"otlp-grpc": "grpc", "otlp-http": "http/protobuf"}


def vllm_tracing_args(telemetry: TelemetrySpec | None, env: MutableMapping[str, str] = os.environ) -> dict[str, Any]:
    """Engine args that turn vLLM's tracing on; sets what its subprocesses inherit.

    Must run after this process's provider is installed: `OTEL_SDK_DISABLED` only
    affects providers created later (vLLM's own, in this and child processes).
    """
    if telemetry is None or not telemetry.tracing:
        return {}
    if telemetry.exporter == "file":
        env["OTEL_SDK_DISABLED"] = "true"
        return {"otlp_traces_endpoint": UNUSED_ENDPOINT}
    env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = OTLP_PROTOCOLS[telemetry.exporter]
    return {"otlp_traces_endpoint": telemetry.otlp_endpoint}
