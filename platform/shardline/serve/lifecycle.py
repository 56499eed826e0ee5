"""Ray cluster and Serve application lifecycle: connect, deploy, wait, remove.

Used by the CLI, the tests and the benchmarks. `shardline up` deploys onto a
running cluster when `--address`/RAY_ADDRESS is given, or starts an embedded one
in this process (which then lives as long as `up` does).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass

import ray
from ray import serve

from shardline.engine.protocol import EngineInfo
from shardline.errors import ShardlineError
from shardline.serve import ray_auth
from shardline.serve.app import ROUTER_DEPLOYMENT, build_app, logical_cpus_needed
from shardline.serve.deployment_handles import enum_value, running_replicas
from shardline.serve.ledger import stop_ledger_actor
from shardline.spec.deployment import DeploymentSpec

logger = logging.getLogger(__name__)

POLL_S = 1.0
DRAIN_CALL_TIMEOUT_S = 30.0
FAILED_STATES = ("DEPLOY_FAILED", "UNHEALTHY")


class DeployError(ShardlineError):
    """The application did not become healthy."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    http_port: int | None = None
    """The OpenAI-compatible HTTP port (`router.http_port`); None when it is off."""

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def http_base_url(self) -> str | None:
        """Base URL for OpenAI clients (`.../v1`); None without the HTTP door."""
        return None if self.http_port is None else f"http://{self.host}:{self.http_port}/v1"


def connect(address: str | None, spec: DeploymentSpec | None = None, spare_cpus: float = 0) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS); else start an embedded one,
    sized for `spec` plus `spare_cpus` logical CPUs (room for further apps).

    Returns True when the cluster is embedded (it dies with this process).
    """
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"logging_level": "WARNING", "log_to_driver": False, "include_dashboard": False}
    if address:
        _join(address, **quiet)
        return False
    # Logical CPUs are reservations, not cores: the engine bundles must fit even
    # on a 2-core machine, where workers share cores through OpenMP binding.
    needed = (logical_cpus_needed(spec) if spec else 1) + spare_cpus
    # address="local": always a fresh cluster, even when another one runs on this
    # machine (plain ray.init() would join it and refuse num_cpus).
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, math.ceil(needed)), **quiet)
    return True


def attach(address: str | None) -> None:
    """Join an existing cluster: `address`, RAY_ADDRESS, or the local one ("auto")."""
    _join(address or os.environ.get("RAY_ADDRESS") or "auto", logging_level="WARNING", log_to_driver=False)


def _join(address: str, **init_args) -> None:
    """`ray.init(address)` that sends Ray's auth token when one is available (see
    serve/ray_auth.py), and says in one line what to run when the cluster refuses us."""
    sent_token = ray_auth.use_token_if_available()
    try:
        ray.init(address=address, **init_args)
    except (ConnectionError, RuntimeError) as exc:
        if ray_auth.is_auth_failure(exc):
            raise ray_auth.auth_failure(address, sent_token) from None
        raise


def deploy(spec: DeploymentSpec, timeout_s: float, progress=lambda line: None) -> Endpoint:
    """Deploy `spec` and wait until the router reports SERVING over gRPC.

    `spec` is already validated, so nothing reaches Serve from an invalid spec. What
    only the cluster can check (model files, the tokens file, engine start) fails in
    a replica: then a new application is deleted, so nothing is left half-deployed.
    A failed update of an application that was already there is not deleted (that
    would take down what still serves); Serve keeps whatever replicas it has.
    """
    serve.start(proxy_location="Disabled")
    status = serve.status().applications.get(spec.name)
    existed = status is not None
    serve._run(build_app(spec, failed_deployments(status)), _blocking=False, name=spec.name, route_prefix=None)
    try:
        return _wait_serving(spec, timeout_s, progress)
    except DeployError as exc:
        if existed:
            raise DeployError(
                f"{exc}; application {spec.name!r} existed before, so it was not removed "
                "(deploy a fixed spec, or `shardline down`)"
            ) from None
        undeploy(spec.name)  # and the ledger actor its routers may have started
        raise DeployError(f"{exc}; application {spec.name!r} removed, nothing left deployed") from None
    except BaseException:  # interrupted: do not leave a new application half-deployed either
        if not existed:
            undeploy(spec.name)  # and the ledger actor its routers may have started
        raise


def failed_deployments(app_status) -> frozenset[str]:
    """Deployments of a running app that failed or went unhealthy: a re-deploy starts
    them afresh, even with an unchanged spec (the model files may be there now)."""
    if app_status is None:
        return frozenset()
    return frozenset(
        name for name, d in app_status.deployments.items() if enum_value(d.status) in ("DEPLOY_FAILED", "UNHEALTHY")
    )


def _wait_serving(spec: DeploymentSpec, timeout_s: float, progress) -> Endpoint:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        line, failed = _progress_line(spec.name)
        if line != last:
            progress(line)
            last = line
        if failed:
            raise DeployError(f"deployment failed: {line}")
        if line.startswith("RUNNING"):
            endpoint, ready = _router_view(spec.name)
            # A model scaled to zero (replicas.min 0) serves once the router is up.
            if all(ready.get(m.name) or m.replicas.min == 0 for m in spec.models):
                return endpoint
        time.sleep(POLL_S)
    raise DeployError(f"not healthy after {timeout_s:.0f} s: {last}")


def router_endpoint(app: str) -> Endpoint:
    return _router_view(app)[0]


def _router_view(app: str) -> tuple[Endpoint, dict[str, int]]:
    """The router's address and its fresh count of ready replicas per model. Asked
    through Serve, not over gRPC: the router's port may require TLS or a token, and
    a RUNNING router replica is already listening (it binds in its constructor)."""
    router = serve.get_deployment_handle(ROUTER_DEPLOYMENT, app_name=app)
    ready = router.refresh_health.remote().result(timeout_s=30)
    info = router.endpoint.remote().result(timeout_s=30)
    return Endpoint(info["host"], info["port"], info.get("http_port")), ready


def engine_reports(app: str, deployments: list[str], timeout_s: float = 10.0) -> dict[str, EngineInfo | None]:
    """What one replica of each engine deployment reports it runs (`LLMServer.info`);
    None where none answered within `timeout_s` (no replica yet, or a busy one)."""
    pending = {d: serve.get_deployment_handle(d, app_name=app).info.remote() for d in deployments}
    reports: dict[str, EngineInfo | None] = {}
    for deployment, response in pending.items():
        try:
            reports[deployment] = response.result(timeout_s=timeout_s)
        except Exception as exc:  # unknown, said so: never the spec's value
            logger.warning("no engine report from %s: %s", deployment, exc)
            reports[deployment] = None
    return reports


@dataclass(frozen=True)
class Removal:
    """What `undeploy` did: how long it took and how many router replicas drained first."""

    seconds: float
    routers: int | None
    """Router replicas running when the removal began; None: Serve could not tell."""
    drained: int
    """How many of them confirmed they were draining before Serve deleted the app."""


class NoSuchApplication(ShardlineError):
    """The cluster runs no application of that name."""


def application_status(app: str):
    """Serve's status of `app`; raises NoSuchApplication naming the Shardline applications that run."""
    status = serve.status().applications.get(app)
    if status is not None:
        return status
    running = shardline_applications()
    found = (
        f"running: {', '.join(running)} (pass --name NAME, or the spec file)"
        if running
        else "no Shardline application is running"
    )
    raise NoSuchApplication(f"no application named {app!r} on this cluster; {found}")


def shardline_applications() -> list[str]:
    """The Serve applications on the cluster that are Shardline deployments (they have our router)."""
    apps = serve.status().applications
    return sorted(name for name, app in apps.items() if ROUTER_DEPLOYMENT in app.deployments)


def undeploy(app: str) -> Removal:
    """Drain and remove `app`. Every router replica goes NOT_SERVING and refuses new
    calls before any engine replica stops; then Serve deletes the app: routers let
    their live streams finish (`rollout.drain_timeout_s`) and the engine replicas keep
    serving those streams until they end. A router that cannot be asked to drain does
    not keep the app alive: the app is deleted anyway (see `Removal.drained`). Last,
    the app's ledger actor stops; its checkpoint stays, so a redeploy under the same
    name starts with the window's spend (its first router starts the actor again)."""
    began = time.monotonic()
    routers, drained = None, 0
    try:
        routers = _running_routers(app)
        drained = drain_routers(app, routers)
    except Exception as exc:  # a dead or stuck router must not keep the app alive
        logger.warning(
            "could not ask the routers of %s to drain first (%s: %s); deleting anyway", app, type(exc).__name__, exc
        )
    serve.delete(app)
    stop_ledger_actor(app)
    return Removal(time.monotonic() - began, routers, drained)


def _running_routers(app: str) -> int:
    status = serve.status().applications.get(app)
    router = status.deployments.get(ROUTER_DEPLOYMENT) if status else None
    return running_replicas(router) if router else 0


def drain_routers(app: str, expected: int, timeout_s: float = DRAIN_CALL_TIMEOUT_S) -> int:
    """Ask each of the `expected` running router replicas of `app` to begin draining;
    returns how many answered. A handle call reaches one replica of Serve's choosing,
    so it asks until each has answered (with its replica id) or `timeout_s` passes."""
    if not expected:
        return 0
    handle = serve.get_deployment_handle(ROUTER_DEPLOYMENT, app_name=app)
    answered: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while len(answered) < expected and time.monotonic() < deadline:
        answered.add(handle.begin_drain.remote().result(timeout_s=timeout_s))
    return len(answered)


def _progress_line(app: str) -> tuple[str, bool]:
    status = serve.status().applications.get(app)
    if status is None:
        return "WAITING for the application to be created", False
    parts = []
    for name, dep in sorted(status.deployments.items()):
        states = ", ".join(f"{n} {enum_value(s)}" for s, n in sorted(dep.replica_states.items()))
        states = states or "no replicas"
        parts.append(f"{name}: {states}")
    state = enum_value(status.status)
    failed = state in FAILED_STATES
    detail = f" ({_failure_cause(status)})" if failed else ""
    return f"{state}{detail} | " + "; ".join(parts), failed


def _failure_cause(app_status) -> str:
    """The replica's own error (last line of its traceback), not Serve's summary."""
    for name, dep in sorted(app_status.deployments.items()):
        lines = [line.strip() for line in (dep.message or "").splitlines() if line.strip()]
        if enum_value(dep.status) in FAILED_STATES and lines:
            return f"{name}: {lines[-1]}"
    return (app_status.message or "").splitlines()[0] if app_status.message else "unknown cause"
