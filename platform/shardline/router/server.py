"""The router's grpc.aio server: Inference, grpc.health.v1 and server reflection.

Health is per service: "" (the whole router), `shardline.v1.Inference` (every
model has a ready replica) and `shardline.v1.Inference/<model>` (that model).
Everything is NOT_SERVING until the health loop has seen ready replicas, and
again while draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shardline.router import embedder, transport
from shardline.policies.compression.extractive import Embedder
from shardline.router.backend import Backend
from shardline.router.http_server import HttpServer
from shardline.security.auth import router_guard, router_interceptors
from shardline.security.tls import server_credentials
from shardline.router.servicer import InferenceServicer
from shardline.router.wire import DecodeInterceptor
from shardline.spec.model import DeploymentSpec
from shardline.v1 import inference_pb2, inference_pb2_grpc

logger = logging.getLogger(__name__)

INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["Inference"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def model_service(model: str) -> str:
    return f"{INFERENCE_SERVICE}/{model}"


class RouterServer:
    def __init__(self, spec: DeploymentSpec, backend: Backend, embed: Embedder = embedder.minilm_embed):
        self._spec = spec
        self._backend = backend
        self._embed = embed
        self.servicer = InferenceServicer(spec, backend, embed)
        self._health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._health_task: asyncio.Task | None = None
        self.port: int | None = None
        self.http: HttpServer | None = None
        self.http_port: int | None = None

    async def start(self) -> int:
        """Bind and serve; returns the bound port (useful when the spec says 0)."""
        cfg = self._spec.router
        guard = router_guard(cfg)  # one for both doors: same tokens, same rate-limit buckets
        # Auth first, so an unauthenticated caller never costs a parse.
        interceptors = [*router_interceptors(cfg, guard), DecodeInterceptor()]
        server = grpc.aio.server(interceptors=interceptors, options=transport.server_options(cfg.limits))
        inference_pb2_grpc.add_InferenceServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if cfg.reflection:
            names = (INFERENCE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)
            reflection.enable_server_reflection(names, server)
        address = f"{cfg.host}:{cfg.port}"
        creds = server_credentials(cfg.tls) if cfg.tls else None
        self.port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"router cannot bind {cfg.host}:{cfg.port}")
        await self._set_health({m.name: 0 for m in self._spec.models})
        if any(m.compression and m.compression.policy == "extractive" for m in self._spec.models):
            await asyncio.to_thread(self._embed, ["warm up"])  # load the sentence model before serving
        await server.start()
        self._server = server
        if cfg.http_port is not None:
            self.http = HttpServer(self._spec, self.servicer.pipeline, guard)
            self.http_port = await self.http.start()
        self._health_task = asyncio.create_task(self._health_loop())
        logger.info("router listening on %s:%d", cfg.host, self.port)
        return self.port

    async def stop(self, grace_s: float = 5.0) -> None:
        """Drain: report NOT_SERVING first, then let in-flight calls finish."""
        if self._health_task:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self._health.enter_graceful_shutdown()
        if self._server:
            await asyncio.gather(self._server.stop(grace_s), self.http.stop(grace_s) if self.http else asyncio.sleep(0))

    async def refresh_health(self) -> dict[str, int]:
        ready = await self._backend.ready_replicas()
        await self._set_health(ready)
        return ready

    async def _health_loop(self) -> None:
        while True:
            try:
                await self.refresh_health()
            except Exception:  # a flaky control plane must not kill the loop
                logger.exception("router health refresh failed")
            await asyncio.sleep(self._spec.router.health_period_s)

    async def _set_health(self, ready: dict[str, int]) -> None:
        self.servicer.ready = dict(ready)
        for model in self._spec.models:
            await self._health.set(model_service(model.name), SERVING if ready.get(model.name) else NOT_SERVING)
        overall = SERVING if all(ready.get(m.name) for m in self._spec.models) else NOT_SERVING
        await self._health.set(INFERENCE_SERVICE, overall)
        await self._health.set("", overall)
