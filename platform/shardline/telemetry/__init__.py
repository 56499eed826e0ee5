"""Telemetry: OpenTelemetry tracing across processes and nodes, Prometheus metrics.

- `attributes`: every span, attribute and resource name we emit (one place).
- `tracing`: the per-process tracer provider, W3C carriers, the stage-span helper.
- `requests`: what the router and the replica record for one generation.
- `store`: the local file span store (`exporter: file`) and its reader.
- `tree`: renders one trace as an indented span tree (`shardline trace`).
- `metrics`: Prometheus metric definitions and the per-process endpoint.
"""
