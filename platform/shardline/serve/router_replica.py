"""RouterReplica: runs the gRPC router inside a Ray Serve replica.

Why a Serve deployment that owns its own grpc.aio server, rather than Serve's
built-in gRPC proxy: the built-in proxy adds a hop (proxy actor -> ingress
replica -> model replica) and owns the health and reflection services, while we
need standard grpc.health.v1 per model, reflection, and as few hops as possible
(client -> router -> engine replica). Serve still manages the router's lifecycle:
it is placed, health-checked and restarted like any replica, and deleted with
the application.
"""

from __future__ import annotations

import ray
from ray.serve.handle import DeploymentHandle

from shardline.router.server import RouterServer
from shardline.serve.backend import ServeBackend
from shardline.spec.model import DeploymentSpec
from shardline.telemetry.metrics import serve_metrics
from shardline.telemetry.tracing import flush_tracing, setup_tracing

DRAIN_GRACE_S = 10.0


class RouterReplica:
    async def __init__(self, spec: DeploymentSpec, handles: dict[str, DeploymentHandle]):
        setup_tracing(spec.telemetry, "router")
        t = spec.telemetry
        self._metrics_port = serve_metrics(t.metrics_port) if t.metrics else None
        self._server = RouterServer(spec, ServeBackend(spec.name, handles))
        await self._server.start()

    def endpoint(self) -> dict:
        return {
            "host": ray.util.get_node_ip_address(),
            "port": self._server.port,
            "http_port": self._server.http_port,
            "in_flight": self._server.servicer.in_flight,
            "metrics_port": self._metrics_port,
        }

    async def refresh_health(self) -> dict[str, int]:
        """Re-read replica readiness now (the CLI calls this instead of waiting a period)."""
        return await self._server.refresh_health()

    async def __del__(self) -> None:
        await self._server.stop(DRAIN_GRACE_S)
        flush_tracing()
