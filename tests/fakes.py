"""A fake engine and backend for router and replica tests (never used outside tests/).

The fake engine "generates" by echoing the prompt's words, one per step (token id i
for step i), so a test can predict every delta; a resumed request (`continuation`)
picks up at the step after the tokens it was given. It raises if used before
`start()`, like a real engine. Faults: `die()` (vLLM's EngineDeadError: every
request, the health probe included, fails with ReplicaLost), `hang()` (alive but
no step makes progress, until `resume()`), `probe_s` (a slow health probe).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from builders import make_spec
from shardline.engine.load import EngineLoad
from shardline.engine.protocol import EngineInfo, EngineStats
from shardline.errors import InvalidArgument, ReplicaLost
from shardline.generation import GenerationDelta, GenerationRequest
from shardline.router.server import RouterServer
from shardline.serve.llm_server import LLMServer
from shardline.spec.deployment import DeploymentSpec, ModelSpec
from shardline.v1 import inference_pb2_grpc as pb_grpc


class FakeEngine:
    def __init__(self, model: ModelSpec, step_s: float = 0.0, max_prompt_words: int = 1000, probe_s: float = 0.0):
        self._model = model
        self.step_s = step_s
        self.max_prompt_words = max_prompt_words
        self.probe_s = probe_s
        self.started = False
        self.dead = False
        self._running = asyncio.Event()
        self._running.set()
        self.unfinished: set[str] = set()
        self.aborted: list[str] = []
        self.calls = 0
        self.probes = 0
        """Health probes the engine received."""
        self.info_calls = 0
        self.info_s = 0.0
        """How long `info()` takes to answer (a busy or cold engine)."""
        self.cpu_used: float | None = None
        """What `cpu_seconds()` reports: None (unknown) unless a test sets it."""
        self.reports: EngineInfo | None = None
        """What `info()` reports; None: the spec's settings, one worker pid per rank."""

    def die(self) -> None:
        self.dead = True
        self._running.set()  # hung steps wake up to find the engine dead

    def hang(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    async def _step(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self._running.wait()
        if self.dead:
            raise ReplicaLost(f"the engine of a {self._model.name!r} replica died")

    async def start(self) -> None:
        self.started = True

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        if not self.started:
            raise RuntimeError("FakeEngine used before start()")
        words = request.prompt.split() or [request.prompt]  # a blank prompt echoes itself
        if len(words) > self.max_prompt_words:
            raise InvalidArgument(f"prompt has {len(words)} tokens; limit {self.max_prompt_words}")
        self.calls += 1
        self.unfinished.add(request.request_id)
        finished = False
        done = len(request.continuation)
        try:
            for n in range(request.max_tokens):
                await self._step(self.step_s)
                i = done + n
                last = n == request.max_tokens - 1
                yield GenerationDelta(
                    text=f" {words[i % len(words)]}",
                    token_ids=[i],
                    finish_reason="length" if last else None,
                    prompt_tokens=len(words) + done,
                    completion_tokens=n + 1,
                )
            finished = True
        finally:
            self.unfinished.discard(request.request_id)
            if not finished:
                self.aborted.append(request.request_id)

    async def abort(self, request_id: str) -> None:
        self.unfinished.discard(request_id)
        self.aborted.append(request_id)

    async def check_health(self) -> None:
        if not self.started:
            raise RuntimeError("FakeEngine used before start()")
        self.probes += 1
        await self._step(self.probe_s)

    def stats(self) -> EngineStats:
        return EngineStats(len(self.unfinished), len(self.aborted), self.calls)

    def cpu_seconds(self) -> float | None:
        return self.cpu_used

    def load(self) -> EngineLoad:
        return EngineLoad(running=len(self.unfinished))

    async def info(self) -> EngineInfo:
        if not self.started:
            raise RuntimeError("FakeEngine used before start()")
        self.info_calls += 1
        await self._step(self.info_s)
        if self.reports is not None:
            return self.reports
        p = self._model.parallelism
        return EngineInfo(
            self._model.name,
            self._model.max_model_len,
            p.tensor,
            p.pipeline,
            expert_parallel=p.expert > 1,
            expert_parallel_size=p.expert,
            quantization=self._model.quantization or "",
            worker_pids=tuple(range(1000, 1000 + p.world_size)),
        )

    def shutdown(self) -> None:
        self.started = False


class PolledReadiness:
    """Fakes push no replica-set changes: the router re-reads `ready` every period."""

    async def replicas_changed(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)


class LocalBackend(PolledReadiness):
    """Router backend that calls LLMServer objects in-process (no Ray)."""

    def __init__(self, servers: dict[str, LLMServer]):
        self.servers = servers
        self.ready: dict[str, int] = {name: 1 for name in servers}

    def stream(self, model: str, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        return self.servers[model].generate(request)

    async def ready_replicas(self) -> dict[str, int]:
        return dict(self.ready)

    async def engine_info(self, model: str) -> EngineInfo:
        return await self.servers[model].info()


class ReplicaSetBackend(PolledReadiness):
    """Round-robin over several in-process replicas of one model. `kill(i)` makes replica
    i fail like a dead Ray Serve replica: its live streams end with ReplicaLost at
    once (even one waiting on a hung engine) and it takes no new calls. Health keeps
    counting it (`ready`) until a test says otherwise, as Serve does until its
    health check notices. `servers` may be filled after construction."""

    def __init__(self, model: str, servers: list[LLMServer] | None = None):
        self.model = model
        self.servers = servers if servers is not None else []
        self.dead: set[int] = set()
        self.calls: list[int] = []
        self.ready = len(self.servers)
        self._next = 0
        self._live: dict[int, set[asyncio.Queue]] = {}

    def kill(self, index: int) -> None:
        self.dead.add(index)
        for queue in self._live.get(index, ()):
            queue.put_nowait(ReplicaLost(f"replica {index} of {self.model!r} died"))

    async def stream(self, model: str, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        alive = [i for i in range(len(self.servers)) if i not in self.dead]
        if not alive:
            raise ReplicaLost(f"no live replica of {model!r}")
        index = alive[self._next % len(alive)]
        self._next += 1
        self.calls.append(index)
        queue: asyncio.Queue = asyncio.Queue()
        self._live.setdefault(index, set()).add(queue)
        pump = asyncio.create_task(_pump(self.servers[index].generate(request), queue))
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                if index in self.dead:
                    raise ReplicaLost(f"replica {index} of {model!r} died")
                yield item
        finally:
            self._live[index].discard(queue)
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def ready_replicas(self) -> dict[str, int]:
        return {self.model: self.ready}

    async def engine_info(self, model: str) -> EngineInfo:
        alive = [i for i in range(len(self.servers)) if i not in self.dead]
        if not alive:
            raise ReplicaLost(f"no live replica of {model!r}")
        return await self.servers[alive[0]].info()


class SlottedBackend(LocalBackend):
    """LocalBackend with Serve's admission: `slots` requests run at once, the rest wait
    in an unbounded queue (Serve's default), so a router that admits everything makes
    its clients wait behind everyone else."""

    def __init__(self, servers: dict[str, LLMServer], slots: int):
        super().__init__(servers)
        self._slots = asyncio.Semaphore(slots)
        self.active = 0
        """Calls running or waiting for a slot."""
        self.most_active = 0

    async def stream(self, model: str, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            async with self._slots, contextlib.aclosing(self.servers[model].generate(request)) as stream:
                async for delta in stream:
                    yield delta
        finally:
            self.active -= 1


class HungBackend(LocalBackend):
    """A replica that accepts calls and never answers (a stuck replica or a lost reply)."""

    async def stream(self, model: str, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        await asyncio.Event().wait()
        yield GenerationDelta("", [])


async def _pump(stream: AsyncIterator[GenerationDelta], queue: asyncio.Queue) -> None:
    try:
        async for delta in stream:
            queue.put_nowait(delta)
        queue.put_nowait(None)
    except Exception as exc:
        queue.put_nowait(exc)


@dataclass
class FakeStack:
    """A real router (both doors when the spec sets `router.http_port`) over in-process
    LLMServers on fake engines, and a gRPC channel to it."""

    spec: DeploymentSpec
    router: RouterServer
    backend: Any
    engines: dict[str, FakeEngine]
    channel: grpc.aio.Channel

    @property
    def engine(self) -> FakeEngine:
        """The first model's engine (most stacks serve one model)."""
        return next(iter(self.engines.values()))

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.router.port}"

    @functools.cached_property
    def stub(self) -> pb_grpc.InferenceStub:
        return pb_grpc.InferenceStub(self.channel)

    async def health_of(self, service: str = "") -> int:
        reply = await health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(service=service))
        return reply.status

    async def close(self) -> None:
        await self.channel.close()
        await self.router.stop(0)


async def start_fake_stack(
    spec: DeploymentSpec | None = None,
    *,
    step_s: float = 0.0,
    engines: dict[str, FakeEngine] | None = None,
    backend_of=LocalBackend,
    backend=None,
    embed=None,
    refresh: bool = True,
    **spec_overrides,
) -> FakeStack:
    """The router over fakes, started on port 0. `spec` defaults to `make_spec(**spec_overrides)`;
    each model gets a `FakeEngine(step_s)` unless `engines` names them. The backend is
    `backend_of(servers)` over one in-process LLMServer per engine, or `backend` as given
    (its servers then are the test's). `refresh`: read replica health before returning,
    so calls are admitted at once."""
    spec = spec or make_spec(**spec_overrides)
    if backend is None:
        engines = engines or {m.name: FakeEngine(m, step_s=step_s) for m in spec.models}
        backend = backend_of({name: await start_llm_server(spec.model(name), e) for name, e in engines.items()})
    router = RouterServer(spec, backend, **({"embed": embed} if embed else {}))
    port = await router.start()
    if refresh:
        await router.refresh_health()
    return FakeStack(spec, router, backend, engines or {}, grpc.aio.insecure_channel(f"127.0.0.1:{port}"))


@contextlib.asynccontextmanager
async def fake_stack(spec: DeploymentSpec | None = None, **options) -> AsyncIterator[FakeStack]:
    """`start_fake_stack(spec, **options)`, closed afterwards."""
    stack = await start_fake_stack(spec, **options)
    try:
        yield stack
    finally:
        await stack.close()


async def start_llm_server(model: ModelSpec, engine: FakeEngine, leave=None) -> LLMServer:
    """Construct an LLMServer the way Ray Serve does (its __init__ is async). `leave`
    replaces the process exit of a replica that goes out of service (default: none)."""
    server = LLMServer.__new__(LLMServer)
    await server.__init__(model, lambda _: engine, leave=leave or (lambda reason: None))
    return server
