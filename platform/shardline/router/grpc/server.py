"""The gRPC door's server: `shardline.v1.Inference`, grpc.health.v1 and server reflection.

Built from the `RouterSpec`: interceptors (authentication, then decoding), the
transport limits (transport.py) and TLS. Health is per service: "" (the whole
router), `shardline.v1.Inference` (every model has a ready replica) and
`shardline.v1.Inference/<model>` (that model). `RouterServer` (router/server.py)
starts, refreshes and drains it.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shardline.router.grpc import transport
from shardline.router.grpc.interceptors import interceptors
from shardline.router.grpc.servicer import InferenceServicer
from shardline.security.auth import Guard
from shardline.security.tls import server_credentials
from shardline.spec.deployment import DeploymentSpec, RouterSpec
from shardline.v1 import inference_pb2_grpc
from shardline.wire import INFERENCE_SERVICE

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def model_service(model: str) -> str:
    return f"{INFERENCE_SERVICE}/{model}"


def grpc_server(
    cfg: RouterSpec, servicer: InferenceServicer, health_servicer: health.aio.HealthServicer, guard: Guard | None
) -> tuple[grpc.aio.Server, int]:
    """The router's grpc.aio server, bound to `router.host:router.port` (not started),
    and the bound port (useful when the spec says 0)."""
    server = grpc.aio.server(interceptors=interceptors(cfg, guard), options=transport.server_options(cfg.limits))
    inference_pb2_grpc.add_InferenceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if cfg.reflection:
        names = (INFERENCE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
    address = f"{cfg.host}:{cfg.port}"
    creds = server_credentials(cfg.tls) if cfg.tls else None
    port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"router cannot bind {cfg.host}:{cfg.port}")
    return server, port


async def set_health(health_servicer: health.aio.HealthServicer, spec: DeploymentSpec, ready: dict[str, int]) -> None:
    """SERVING for each model with a ready replica, or scaled to zero (`replicas.min` 0:
    a request is held while a replica starts); the whole router only when every model is."""
    serving = {m.name: bool(ready.get(m.name)) or m.replicas.min == 0 for m in spec.models}
    for model, up in serving.items():
        await health_servicer.set(model_service(model), SERVING if up else NOT_SERVING)
    overall = SERVING if all(serving.values()) else NOT_SERVING
    await health_servicer.set(INFERENCE_SERVICE, overall)
    await health_servicer.set("", overall)
