"""Finding and watching a deployment's processes on this node, by the titles Ray and
vLLM give them.

Ray names each actor's process `ray::<ActorClass>:<app>:<deployment>...` and vLLM
its engine core `VLLM::EngineCore`, so replicas and engines are found without
Ray's state API (which needs the dashboard). Only processes on the calling node
are visible: the fault drills run single-node or on the node they break.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass

import psutil
from ray import serve

from shardline.serve.deployment_handles import llm_deployment_name, running_replicas

ENGINE_TITLE = "VLLM::EngineCore"
POLL_S = 0.1


@dataclass(frozen=True)
class EngineProcess:
    replica_pid: int
    """The LLMServer replica (a Ray actor process)."""
    engine_pid: int
    """Its vLLM EngineCore child, which schedules (and parents the workers)."""
    worker_pids: tuple[int, ...] = ()
    """The engine's workers (vLLM's mp executor: one per TP x PP rank, even at 1)."""

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.replica_pid, self.engine_pid, *self.worker_pids)


def engine_processes(app: str, model: str) -> list[EngineProcess]:
    """The live replicas of `model` in `app` on this node, with their engine processes."""
    title = f"ray::ServeReplica:{app}:{llm_deployment_name(model)}"
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if not cmdline or not cmdline[0].startswith(title) or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in proc.children():
                if (child.cmdline() or [""])[0].startswith(ENGINE_TITLE):
                    workers = tuple(w.pid for w in child.children(recursive=True))
                    found.append(EngineProcess(proc.pid, child.pid, workers))
    return sorted(found, key=lambda e: e.replica_pid)


def kill(pid: int) -> None:
    """SIGKILL: no handler runs, no cleanup happens, as when a node loses a process."""
    os.kill(pid, signal.SIGKILL)


def release(pid: int) -> None:
    """Never leave a stopped process behind: continue it, then kill it."""
    for sig in (signal.SIGCONT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def gone_after(pids: tuple[int, ...], since: float, timeout_s: float) -> float | None:
    """Seconds from `since` (time.monotonic) until none of `pids` is alive; None: not
    within `timeout_s` (a leak)."""
    while time.monotonic() < since + timeout_s:
        if not any(alive(pid) for pid in pids):
            return time.monotonic() - since
        await asyncio.sleep(POLL_S / 2)
    return None


async def replaced_after(
    app: str, model: str, victims: set[int], replicas: int, since: float, timeout_s: float
) -> float | None:
    """Seconds from `since` until `model` had `replicas` RUNNING replicas with live
    engines again, none of them a victim (replica pids)."""
    while time.monotonic() < since + timeout_s:
        status = await asyncio.to_thread(serve.status)
        deployment = status.applications[app].deployments[llm_deployment_name(model)]
        live = engine_processes(app, model)
        if (
            running_replicas(deployment) >= replicas
            and len(live) >= replicas
            and not victims & {e.replica_pid for e in live}
        ):
            return time.monotonic() - since
        await asyncio.sleep(POLL_S * 5)
    return None
