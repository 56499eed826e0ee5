"""RouterReplica: runs the gRPC router inside a Ray Serve replica.

Why a Serve deployment that owns its own grpc.aio server, rather than Serve's
built-in gRPC proxy: the built-in proxy adds a hop (proxy actor -> ingress
replica -> model replica) and owns the health and reflection services, while we
need standard grpc.health.v1 per model, reflection, and as few hops as possible
(client -> router -> engine replica). Serve still manages the router's lifecycle:
it is placed, health-checked and restarted like any replica, and deleted with
the application.

Stopping: Serve calls the destructor, which drains the router (router/server.py).
`shardline down` first asks every router replica to drain (`begin_drain`) and
only then deletes the app: Serve stops the router and the engines at the same
time, and a call admitted just before the router heard of it would wait for
engines that are already gone.
"""

from __future__ import annotations

import asyncio
import os

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

from shardline.router.server import DrainReport, RouterServer
from shardline.serve.deployment_handles import ServeBackend
from shardline.serve.ledger import SharedLedgers
from shardline.spec.deployment import DeploymentSpec
from shardline.telemetry.metrics import serve_router_metrics
from shardline.telemetry.tracing import flush_tracing, setup_tracing


class RouterReplica:
    async def __init__(self, spec: DeploymentSpec, handles: dict[str, DeploymentHandle]):
        setup_tracing(spec.telemetry, "router")
        self._metrics_port = serve_router_metrics(spec.telemetry)
        self._drain_timeout_s = spec.rollout.drain_timeout_s
        # Every router replica spends from the deployment's one ledger (serve/ledger.py).
        ledgers = await SharedLedgers.connect(spec)
        self._server = RouterServer(spec, ServeBackend(spec.name, handles), ledgers=ledgers)
        self._drain: asyncio.Task[DrainReport] | None = None
        await self._server.start()

    def endpoint(self) -> dict:
        """Where this replica listens and what it holds; `replica_id` and `pid` say which
        replica answered (a handle call reaches one of Serve's choosing)."""
        return {
            "replica_id": serve.get_replica_context().replica_id.unique_id,
            "pid": os.getpid(),
            "host": ray.util.get_node_ip_address(),
            "port": self._server.port,
            "http_port": self._server.http_port,
            "in_flight": self._server.pipeline.in_flight,
            "model_in_flight": dict(self._server.pipeline.capacity.in_flight),
            "metrics_port": self._metrics_port,
        }

    async def refresh_health(self) -> dict[str, int]:
        """Re-read replica readiness now (the CLI calls this instead of waiting a period)."""
        return await self._server.refresh_health()

    async def begin_drain(self) -> str:
        """Start draining (NOT_SERVING, new calls refused) and return at once with this
        replica's id, so the caller can tell when every replica has heard."""
        if self._drain is None:
            self._drain = asyncio.create_task(self._server.drain(self._drain_timeout_s))
        return serve.get_replica_context().replica_id.unique_id

    async def __del__(self) -> None:
        """Serve stops this replica (`shardline down`, a rolling update, scale-down):
        drain within `rollout.drain_timeout_s`; Serve's own shutdown budget for the
        router is longer (serve/app.py), so it does not kill the replica mid-drain."""
        if self._drain is None:
            self._drain = asyncio.create_task(self._server.drain(self._drain_timeout_s))
        await self._drain
        flush_tracing()
