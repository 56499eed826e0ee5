"""LLMServer: the Ray Serve replica that owns one engine.

One replica = one engine whose TP x PP workers sit in the replica's placement
group (see serve/app.py). The constructor starts the engine and sends a warm-up
generation, because the first request after start pays a one-time cost of several
seconds; Serve marks the replica RUNNING only after that. `check_health` (called
by Serve every `health.period_s`) runs a real 1-token generation, not a ping.

Fail-stop: vLLM's engine does not recover once dead, and a stalled one (alive, no
tokens) serves nobody. A replica that finds its engine in either state is out of
service for good: it kills its engine processes and exits at once, rather than
failing Serve's health check three times in a row and being drained. The router
sees its streams end as a lost replica and resumes them on another; Serve's
routers drop a dead replica at the first call that finds it gone (a live one
that failed fast would draw traffic, having the shortest queue); the controller
replaces it at its next health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable

from shardline.engine.protocol import Engine, EngineInfo, EngineStats
from shardline.errors import DeadlineExceeded, EngineFailure, ReplicaLost
from shardline.generation import GenerationDelta, GenerationRequest
from shardline.serve import autoscaling
from shardline.serve.coalesce import coalesce, load_scaled
from shardline.spec.deployment import ModelSpec, TelemetrySpec
from shardline.telemetry.metrics import serve_replica_metrics
from shardline.telemetry.requests import replica_label, replica_request
from shardline.telemetry.tracing import flush_tracing, setup_tracing

logger = logging.getLogger(__name__)

BUSY_CPU_SHARE = 0.05
"""A probe that timed out with no token for anyone still passes when the engine's
processes used at least this share of one core meanwhile: a long prompt's prefill
is one engine step of many seconds on a CPU. A stopped or deadlocked engine waits
without computing (vLLM's idle workers sleep in poll), far below it."""

EngineFactory = Callable[[ModelSpec], Engine]
ExitReplica = Callable[[str], None]


def vllm_engine(model: ModelSpec) -> Engine:
    from shardline.engine.vllm_engine import VLLMEngine

    return VLLMEngine(model)


def exit_replica(reason: str) -> None:
    """Kill this process's engine (its child processes, stopped ones too) and exit."""
    import psutil

    logger.error("replica leaves: %s", reason)
    # In a replica Serve swaps sys.stderr for a buffered logger, which os._exit
    # never flushes: write the reason to fd 2 itself (Ray's worker-*.err file).
    os.write(2, f"shardline replica {os.getpid()} leaves: {reason}\n".encode())
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGKILL)
    flush_tracing()
    logging.shutdown()
    os._exit(1)


class LLMServer:
    async def __init__(
        self,
        model: ModelSpec,
        engine_factory: EngineFactory = vllm_engine,
        telemetry: TelemetrySpec | None = None,
        leave: ExitReplica = exit_replica,
    ):
        self._model = model
        self._replica = replica_label()
        self._leave = leave
        self.failure: str | None = None
        """Why this replica is out of service (its engine died or stalled); None while it serves."""
        self._deltas = 0  # engine output so far, across requests: tells stuck from busy
        self._awaiting_first: dict[str, float] = {}  # request id -> when it arrived, until its first token
        self._streams = 0  # requests in flight: how much this replica coalesces
        self._metrics_port = _start_telemetry(telemetry)  # before the engine: see telemetry.tracing
        self._engine = engine_factory(model)
        await self._engine.start()
        # Warm-up, without the probe's timeout: the first generation pays a one-time cost.
        await self._engine.check_health()
        logger.info("replica for %s is warm", model.name)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream deltas; past `request.timeout_s` the engine request is aborted."""
        loop = asyncio.get_running_loop()
        deadline = None if request.timeout_s is None else loop.time() + request.timeout_s
        interval = functools.partial(self._interval, self._model.stream_interval_ms / 1000)
        if self.failure:
            raise ReplicaLost(f"this replica of {self._model.name!r} is out of service: {self.failure}")
        self._awaiting_first[request.request_id] = time.monotonic()
        self._streams += 1
        try:
            with replica_request(self._model.name, request, self._replica) as tracked:
                async for delta in coalesce(self._engine.generate(tracked.request), interval, deadline):
                    self._awaiting_first.pop(request.request_id, None)
                    self._deltas += 1
                    if delta.finish_reason is not None:  # the router learns who served it
                        delta = dataclasses.replace(delta, replica=self._replica)
                    tracked.delta(delta)
                    yield delta
        except TimeoutError:
            raise DeadlineExceeded(
                f"request {request.request_id} passed its deadline of {request.timeout_s:.3g} s"
            ) from None
        except ReplicaLost as exc:  # the engine died under this request
            self._out_of_service(exc.message)
            raise
        finally:
            self._awaiting_first.pop(request.request_id, None)
            self._streams -= 1

    def _interval(self, most_s: float) -> float:
        return load_scaled(most_s, self._streams)

    async def check_health(self) -> None:
        """A real 1-token generation within `health.probe_timeout_s`. Raises while the
        replica is out of service; takes it out of service when the engine is dead,
        or when the probe timed out and no request got a token meanwhile (stalled)."""
        if self.failure:
            raise EngineFailure(f"replica of {self._model.name!r} is out of service: {self.failure}")
        limit = self._model.health.probe_timeout_s
        before, cpu_before = self._deltas, self._engine.cpu_seconds()
        try:
            async with asyncio.timeout(limit):
                await self._engine.check_health()
        except ReplicaLost as exc:
            self._out_of_service(exc.message)
            raise EngineFailure(exc.message) from None
        except TimeoutError:
            if self._deltas > before:  # busy, not stuck: other requests got tokens
                logger.warning("health probe of %s took over %g s on a busy engine", self._model.name, limit)
                return
            computed = _advance(cpu_before, self._engine.cpu_seconds())
            if computed >= BUSY_CPU_SHARE * limit:  # one long step (a prefill): computing, not stuck
                logger.warning(
                    "health probe of %s took over %g s: no token, but the engine computed for %.1f CPU s",
                    self._model.name,
                    limit,
                    computed,
                )
                return
            self._out_of_service(
                f"the engine stalled: no token for any request in {limit:g} s "
                "(health.probe_timeout_s), the health probe's included"
            )
            raise EngineFailure(self.failure) from None

    def _out_of_service(self, reason: str) -> None:
        if self.failure:
            return
        self.failure = reason
        # Soon, not now: the error that found the failure first reaches its caller.
        asyncio.get_running_loop().call_soon(self._leave, f"{self._model.name}: {reason}")

    def stats(self) -> EngineStats:
        return self._engine.stats()

    def record_routing_stats(self) -> dict[str, int]:
        """Serve's per-replica stats hook (called every request_routing_stats_period_s and
        on demand, replica_stats.py): what this replica's engine did, by its own counters."""
        return dataclasses.asdict(self._engine.stats())

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's autoscaling hook (serve/autoscaling.py): the engine's load now. The
        TTFT signal is the engine's recent slowest first token, or the age of the oldest
        request here still waiting for one, whichever is longer (a queue that never
        yields a first token must count, not go unseen)."""
        load = self._engine.load()
        now = time.monotonic()
        oldest = now - min(self._awaiting_first.values(), default=now)
        return {
            autoscaling.WAITING: load.waiting,
            autoscaling.RUNNING: load.running,
            autoscaling.KV_CACHE_USAGE: load.kv_cache_usage,
            autoscaling.TTFT_S: max(load.ttft_s, oldest),
        }

    async def info(self) -> EngineInfo:
        """What this replica's engine runs, as the engine reports it (the router's ListModels)."""
        return await self._engine.info()

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
    return serve_replica_metrics(telemetry)


def _advance(before: float | None, after: float | None) -> float:
    """CPU seconds used between two readings; 0 when either is unknown."""
    return after - before if before is not None and after is not None else 0.0
