"""Finding a deployment's processes on this node, by the titles Ray gives them.

Ray names each actor's process `ray::<ActorClass>:<app>:<deployment>...`, so a
replica's pid is found without Ray's state API (which needs the dashboard).
Only processes on the calling node are visible: the fault tests run single-node
or call this on the node they break.
"""

from __future__ import annotations

import os
import signal

import psutil

from shardline.serve.backend import llm_deployment_name


def replica_pids(app: str, model: str) -> list[int]:
    """Pids of the live engine replicas (LLMServer actors) of `model` in `app`."""
    title = f"ray::ServeReplica:{app}:{llm_deployment_name(model)}"
    pids = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and cmdline[0].startswith(title) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            pids.append(proc.pid)
    return sorted(pids)


def kill(pid: int) -> None:
    """SIGKILL: no handler runs, no cleanup happens, as when a node loses a process."""
    os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (a replica's engine core and workers)."""
    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
