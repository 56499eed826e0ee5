"""LLMServer: the Ray Serve replica that owns one engine.

One replica = one engine whose TP x PP workers sit in the replica's placement
group (see serve/app.py). The constructor starts the engine and sends a warm-up
generation, because the first request after start pays a one-time cost of several
seconds; Serve marks the replica RUNNING only after that. `check_health` (called
by Serve every few seconds) runs a real 1-token generation, not a ping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from shardline.engine.protocol import Engine, EngineInfo, EngineStats, GenerationDelta, GenerationRequest
from shardline.errors import DeadlineExceeded
from shardline.serve.coalesce import coalesce
from shardline.spec.model import ModelSpec, TelemetrySpec
from shardline.telemetry.metrics import serve_metrics
from shardline.telemetry.requests import replica_label, replica_request
from shardline.telemetry.tracing import flush_tracing, setup_tracing

logger = logging.getLogger(__name__)

EngineFactory = Callable[[ModelSpec], Engine]


def vllm_engine(model: ModelSpec) -> Engine:
    from shardline.engine.vllm_engine import VLLMEngine

    return VLLMEngine(model)


class LLMServer:
    async def __init__(
        self, model: ModelSpec, engine_factory: EngineFactory = vllm_engine, telemetry: TelemetrySpec | None = None
    ):
        self._model = model
        self._replica = replica_label()
        self._metrics_port = _start_telemetry(telemetry)  # before the engine: see telemetry.tracing
        self._engine = engine_factory(model)
        await self._engine.start()
        await self._engine.check_health()  # warm-up
        logger.info("replica for %s is warm", model.name)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream deltas; past `request.timeout_s` the engine request is aborted."""
        loop = asyncio.get_running_loop()
        deadline = None if request.timeout_s is None else loop.time() + request.timeout_s
        interval = self._model.stream_interval_ms / 1000
        try:
            with replica_request(self._model.name, request, self._replica) as tracked:
                async for delta in coalesce(self._engine.generate(tracked.request), interval, deadline):
                    tracked.delta(delta)
                    yield delta
        except TimeoutError:
            raise DeadlineExceeded(
                f"request {request.request_id} passed its deadline of {request.timeout_s:.3g} s"
            ) from None

    async def check_health(self) -> None:
        await self._engine.check_health()

    def stats(self) -> EngineStats:
        return self._engine.stats()

    def info(self) -> EngineInfo:
        return self._engine.info()

    def metrics_endpoint(self) -> dict:
        """Where this replica serves Prometheus metrics (port None: metrics off)."""
        import ray

        return {"host": ray.util.get_node_ip_address(), "port": self._metrics_port}

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown()
        flush_tracing()


def _start_telemetry(telemetry: TelemetrySpec | None) -> int | None:
    if telemetry is None:
        return None
    setup_tracing(telemetry, "replica")
    return serve_metrics(0) if telemetry.metrics else None
