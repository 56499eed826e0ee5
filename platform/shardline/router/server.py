"""The router: one request pipeline behind two front doors, kept healthy and drained.

`RouterServer` owns the `Pipeline` (router/pipeline.py) and hands it to both doors:
the gRPC server (router/grpc/) and, with `router.http_port`, the OpenAI-compatible
HTTP server (router/http/). Both admit callers through one `Guard` (same tokens,
same rate-limit buckets, which live in the router's `Ledgers` with the budgets:
this process's, or on Ray the deployment's shared ledger, serve/ledger.py). Its
health loop keeps the pipeline's view of ready replicas current, publishes it as
gRPC health (router/grpc/server.py) and has the engines' reports for ListModels
asked again when it changes (engine_reports.py).
Everything is NOT_SERVING until the health loop has seen ready replicas, and
again while draining.

Draining (`drain`, run when Serve stops the router replica): NOT_SERVING on every
service and new calls refused (UNAVAILABLE: nothing was generated, retry) first,
then the listeners close (connections get GOAWAY, so new calls go to another router
replica sharing the port, or end UNAVAILABLE at once), live calls run to the end
within the drain timeout, and whatever is left then is cancelled.

Why no call ends in the GOAWAY: once grpc.aio's `stop()` begins, gRPC core ends
CANCELLED, without running a handler, every call still queued for one and every
call that arrives before its client has read the GOAWAY (grpc/grpc#41785). A client
sends such a call when a call of its own has just ended. So for QUIESCE_S before
the GOAWAY no Inference call's status goes out (`hold_call_ends`): the next calls
of those clients arrive in that time and are refused UNAVAILABLE behind the GOAWAY.
That is a time margin, not a guarantee: a client slower than QUIESCE_S to send its
next call, or one that sends calls without waiting for its earlier ones, can still
meet the window; only the gRPC fix closes it for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health

from shardline.policies.compression import EXTRACTIVE
from shardline.policies.compression.extractive import Embedder
from shardline.router import embedder
from shardline.router.backend import Backend
from shardline.router.engine_reports import EngineReports
from shardline.router.grpc.server import grpc_server, set_health
from shardline.router.grpc.servicer import InferenceServicer
from shardline.router.http.server import HttpServer
from shardline.router.ledger import Ledgers
from shardline.router.metering import Metering
from shardline.router.pipeline import Pipeline
from shardline.security.auth import router_guard
from shardline.spec.deployment import DeploymentSpec

logger = logging.getLogger(__name__)

DRAIN_POLL_S = 0.05
QUIESCE_S = 0.25
"""Before the GOAWAY: time for the next call of a client whose call ended just before
the drain to arrive and be refused, and for a call accepted just before the drain to
be counted in flight. A few ms on an idle machine; with 0.1 s, 1 such call in 800
still met the closing server on 2 cores at a load average of 20."""
QUIESCE_TURNS = 10
"""The quiesce is slept in this many steps, each counted for at most twice its length,
so a stall of this process (a busy CPU) does not use it up while calls that arrived
meanwhile still wait for the event loop."""
FIRST_VIEW_TIMEOUT_S = 30.0
FLUSH_S = 0.5
"""After the last call ends: time for its final status to go out; health Watch calls
(which never end by themselves) are cancelled then."""


@dataclass(frozen=True)
class DrainReport:
    in_flight: int
    """Calls running when the drain began."""
    cut: int
    """Calls still running at the drain timeout (cancelled)."""
    seconds: float


class RouterServer:
    def __init__(
        self,
        spec: DeploymentSpec,
        backend: Backend,
        embed: Embedder = embedder.minilm_embed,
        ledgers: Ledgers | None = None,
    ):
        self._spec = spec
        self._backend = backend
        self._embed = embed
        self.metering = Metering(spec, ledgers)
        self.pipeline = Pipeline(spec, backend, embed, self.metering)
        self.engine_reports = EngineReports(backend)
        self.servicer = InferenceServicer(spec, self.pipeline, self.engine_reports)
        self._health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._health_task: asyncio.Task | None = None
        self.port: int | None = None
        self.http: HttpServer | None = None
        self.http_port: int | None = None

    async def start(self) -> int:
        """Bind and serve; returns the bound port (useful when the spec says 0)."""
        cfg = self._spec.router
        guard = router_guard(cfg, self.metering.ledgers)  # one for both doors: same tokens, same buckets
        server, self.port = grpc_server(cfg, self.servicer, self._health, guard)
        await self._set_health(await self._first_view())
        if any(m.compression and m.compression.policy == EXTRACTIVE for m in self._spec.models):
            await asyncio.to_thread(self._embed, ["warm up"])  # load the sentence model before serving
        await server.start()
        self._server = server
        if cfg.http_port is not None:
            self.http = HttpServer(self._spec, self.pipeline, guard)
            self.http_port = await self.http.start()
        self._health_task = asyncio.create_task(self._health_loop())
        logger.info("router listening on %s:%d", cfg.host, self.port)
        return self.port

    async def stop(self, grace_s: float = 5.0) -> DrainReport:
        return await self.drain(grace_s)

    async def drain(self, timeout_s: float) -> DrainReport:
        """NOT_SERVING, refuse new calls, GOAWAY, let live calls finish within `timeout_s`, close."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        if self._health_task:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self._health.enter_graceful_shutdown()
        self.pipeline.draining = True
        in_flight = self.pipeline.in_flight
        closing = await self._close_doors(timeout_s)
        while self.pipeline.in_flight and loop.time() - began < timeout_s:
            await asyncio.sleep(DRAIN_POLL_S)
        cut = self.pipeline.in_flight
        if self._server:  # a shorter grace than the pending stop's ends it sooner
            await self._server.stop(0 if cut else FLUSH_S)
        await asyncio.gather(*closing)
        self.engine_reports.close()
        report = DrainReport(max(in_flight, cut), cut, loop.time() - began)
        log = logger.warning if cut else logger.info
        log(
            "router drained in %.2f s: %d call(s) in flight, %d cut at the %.3g s drain timeout",
            report.seconds,
            report.in_flight,
            cut,
            timeout_s,
        )
        return report

    async def _close_doors(self, timeout_s: float) -> list[asyncio.Task]:
        """Both doors stop accepting, after QUIESCE_S with every call's end held (see the
        module docstring). Their grace outlasts the drain's, which decides when they close."""
        self.servicer.hold_call_ends()
        try:
            await _quiesce(min(QUIESCE_S, timeout_s))
            closing = [asyncio.create_task(self._server.stop(timeout_s + FLUSH_S))] if self._server else []
            if self.http:
                closing.append(asyncio.create_task(self.http.stop(timeout_s + FLUSH_S)))
            # The stop task's first step queues the GOAWAY on every connection (grpc core's
            # shutdown_and_notify); a status sent after it reaches the client behind it.
            await asyncio.sleep(0)
        finally:
            self.servicer.release_call_ends()
        return closing

    async def refresh_health(self) -> dict[str, int]:
        ready = await self._backend.ready_replicas()
        await self._set_health(ready)
        return ready

    async def _first_view(self) -> dict[str, int]:
        """Readiness before the port opens: a call accepted before it was known would be
        refused as "no ready replica" while Serve has replicas for it (a new router
        replica of a rolling update takes calls as soon as it listens)."""
        try:
            return await asyncio.wait_for(self._backend.ready_replicas(), FIRST_VIEW_TIMEOUT_S)
        except Exception:  # the health loop keeps trying; start NOT_SERVING meanwhile
            logger.exception("router could not read replica readiness before serving")
            return {m.name: 0 for m in self._spec.models}

    async def _health_loop(self) -> None:
        """Re-reads readiness whenever the backend says the replica set changed, and at
        least every `router.health_period_s`."""
        while True:
            await self._backend.replicas_changed(self._spec.router.health_period_s)
            try:
                await self.refresh_health()
            except Exception:  # a flaky control plane must not kill the loop
                logger.exception("router health refresh failed")

    async def _set_health(self, ready: dict[str, int]) -> None:
        self.pipeline.ready = dict(ready)
        self.engine_reports.update(ready)
        await set_health(self._health, self._spec, ready)


async def _quiesce(seconds: float) -> None:
    """Sleep for `seconds` of event-loop progress (see QUIESCE_TURNS)."""
    loop = asyncio.get_running_loop()
    step, progress = seconds / QUIESCE_TURNS, 0.0
    while progress < seconds:
        began = loop.time()
        await asyncio.sleep(step)
        progress += min(loop.time() - began, 2 * step)
