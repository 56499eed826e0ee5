"""Builds the Ray Serve application from a DeploymentSpec.

One `llm-<model>` deployment per model (replicas of LLMServer) and one `router`
deployment in front. Each engine replica's placement group holds one bundle for
the replica process and one per TP x PP worker, packed on one node (on CPU the
workers are the engine's child processes, so the bundles reserve their CPUs; on
GPU vLLM's Ray executor places each worker actor, TP=1 included, in its own
bundle and its GPU). The layout and why: spec/placement.py.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import uuid
from pathlib import Path

from ray import serve
from ray.serve import Application

from shardline.serve.autoscaling import autoscaling_config, replica_env
from shardline.serve.deployment_handles import llm_deployment_name
from shardline.serve.llm_server import LLMServer
from shardline.serve.replica_set import request_router_config
from shardline.serve.router_replica import RouterReplica
from shardline.spec.deployment import DeploymentSpec, ModelSpec, RolloutSpec
from shardline.spec.placement import REPLICA_BUNDLE, placement_bundles

ROUTER_DEPLOYMENT = "router"
# Ray Serve's throughput mode: user code, the handle's router and the replica on
# one event loop (no cross-thread hand-off per streamed item), gRPC between
# deployments, buffered access logs. Read by Serve at import in each replica.
SERVE_REPLICA_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
# That mode also opens Serve's own ingress listeners on the app's ingress (our
# router, which serves its own gRPC port instead) and then holds a stopping ingress
# replica for 30 s before its destructor runs: the router's drain would start late.
ROUTER_ENV = {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
# Past `rollout.drain_timeout_s` a stopping replica still needs time for its own
# destructor (engine shutdown; the router's final flush) before Serve kills it.
SHUTDOWN_MARGIN_S = 10.0
# Serve waits this long, then until the replica has no Serve requests, before it
# calls the destructor. A router's gRPC streams are not Serve requests, so any wait
# here only delays its NOT_SERVING while the engines behind it are already stopping.
ROUTER_WAIT_LOOP_S = 0.05


def build_app(spec: DeploymentSpec, retry: frozenset[str] = frozenset()) -> Application:
    """The application; `retry` names deployments to start afresh even if their spec is
    unchanged (failed ones: Serve ignores a re-deploy of the version it has)."""
    handles = {
        m.name: versioned(
            llm_deployment(m, spec.rollout, spec.router.replicas),
            retry,
            # Replica counts are Serve's to apply in place; no engine reads them.
            m.model_dump(mode="json", exclude={"replicas": {"min", "max"}}),
            spec.telemetry.model_dump(mode="json"),
        ).bind(m, telemetry=spec.telemetry)
        for m in spec.models
    }
    return versioned(router_deployment(spec), retry, spec.model_dump(mode="json")).bind(spec, handles)


def versioned(deployment: serve.Deployment, retry: frozenset[str], *built_from: dict) -> serve.Deployment:
    """The deployment with a version that changes only with what its replicas are built
    from (their specs, as JSON) and with our code, or with a retry. Serve restarts a
    deployment's replicas on a re-deploy only when its version or its actor options
    (env, bundles) changed, and applies the rest of its config (replica counts) in
    place; unset, it draws a random version every deploy, and a router-only change
    restarted every engine (a minute or more each on a CPU)."""
    payload = json.dumps(built_from, sort_keys=True)
    salt = uuid.uuid4().hex if deployment.name in retry else ""
    digest = hashlib.sha256(f"{code_fingerprint()}\n{payload}\n{salt}".encode()).hexdigest()[:16]
    return deployment.options(version=digest, _internal=True)  # `version` is Serve-internal since 2.x


@functools.cache
def code_fingerprint() -> str:
    """Hash of our packages' sources (shardline and the kernels vLLM loads): a code
    upgrade, released or not, is a new version of every deployment."""
    import shardline
    import shardline_kernels

    digest = hashlib.sha256()
    for package in (shardline, shardline_kernels):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def rollout_options(rollout: RolloutSpec) -> dict:
    """Serve's drain and rolling-update options, shared by the router and the engines.
    An engine replica waits for its streams up to the drain timeout, as the router
    does, so a stream the router keeps alive is never cut under it."""
    return {
        "graceful_shutdown_timeout_s": rollout.drain_timeout_s + SHUTDOWN_MARGIN_S,
        "max_surge_percent": rollout.surge_percent,
    }


def serve_queue_bound(model: ModelSpec, routers: int = 1) -> int:
    """Serve's `max_queued_requests` (a bound per caller, i.e. per router replica): the
    most that router may ever have in flight for the model (its share at max replicas,
    router/capacity.py). The router rejects first; this bound only stops runaway
    queueing if the router's view of ready replicas is stale, and it is loose on
    purpose because Serve counts a request as queued even while it is being routed
    to a free replica (so a tight bound rejects spuriously under bursts)."""
    r = model.replicas
    return max(1, math.ceil(r.max * (r.max_ongoing_requests + r.max_queued_requests) / routers))


def llm_deployment(model: ModelSpec, rollout: RolloutSpec = RolloutSpec(), routers: int = 1) -> serve.Deployment:
    r = model.replicas
    # LLM signals (serve/autoscaling.py) between min and max; a fixed count otherwise.
    scaling = {"autoscaling_config": autoscaling_config(model)} if r.autoscaled else {"num_replicas": r.min}
    return serve.deployment(LLMServer).options(
        name=llm_deployment_name(model.name),
        # The replica reserves no GPU (bundle 0 holds none): the engine's workers run
        # in their own bundles, never in the replica process (spec/placement.py).
        ray_actor_options=_actor_options(REPLICA_BUNDLE["CPU"], {**replica_env(model), **model.env}),
        placement_group_bundles=placement_bundles(model),
        placement_group_strategy="STRICT_PACK",
        max_ongoing_requests=r.max_ongoing_requests,
        max_queued_requests=serve_queue_bound(model, routers),
        # Serve checks a replica only once its constructor (engine start and warm-up)
        # has returned, so these bound steady-state checks, not start-up.
        health_check_period_s=model.health.period_s,
        health_check_timeout_s=model.health.timeout_s,
        # Replica choice (routing.policy), and the router's readiness follows the
        # replica set Serve routes to (replica_set.py).
        request_router_config=request_router_config(model),
        **rollout_options(rollout),
        **scaling,
    )


def _actor_options(num_cpus: float, env: dict[str, str], resources: dict[str, float] | None = None) -> dict:
    options = {"num_cpus": num_cpus, "runtime_env": {"env_vars": {**SERVE_REPLICA_ENV, **env}}}
    return {**options, "resources": resources} if resources else options


def router_deployment(spec: DeploymentSpec) -> serve.Deployment:
    return serve.deployment(RouterReplica).options(
        name=ROUTER_DEPLOYMENT,
        num_replicas=spec.router.replicas,
        ray_actor_options=_actor_options(spec.router.cpu, ROUTER_ENV, spec.router.custom),
        graceful_shutdown_wait_loop_s=ROUTER_WAIT_LOOP_S,
        **rollout_options(spec.rollout),
    )


def logical_cpus_needed(spec: DeploymentSpec) -> float:
    """Logical CPUs the app reserves at max replicas (sizes an embedded cluster, which
    must have room for every replica autoscaling may add)."""
    engines = sum(sum(b["CPU"] for b in placement_bundles(m)) * m.replicas.max for m in spec.models)
    return engines + spec.router.cpu * spec.router.replicas
