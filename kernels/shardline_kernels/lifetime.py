"""Every vLLM child process dies with the process that started it.

A replica's AsyncLLM starts the vLLM engine core as a child process, and on CPU the
engine core starts one worker process per TP x PP rank. A parent that is SIGKILLed
runs no cleanup. Ray 2.60's raylet signals a dead worker's process group, but only
while the raylet itself lives: after `ray stop --force` or a node shutdown the engine
processes were reparented to init and kept their cores (16-25% each, idle), and on a
GPU node they would keep the GPU's memory, for minutes
(tests/integration/test_engine_lifetime.py).

So each child asks the kernel for SIGKILL when its parent dies (prctl
PR_SET_PDEATHSIG), from our vLLM plugin, which vLLM calls in the engine core and in
each worker before either loads a model or starts a process of its own. Why not a
watchdog thread that polls the parent: the kernel needs nothing from the parent,
nothing polls, and the signal also reaches a child that is wedged in C++, holding
the GIL or stopped. What the kernel's rule asks of us:
- the setting belongs to the calling thread and dies with it: it is made from the
  child's main thread, which lives as long as the process (vLLM loads plugins there);
- "parent" is the thread that started the child: the replica starts its engine on a
  thread of its event loop's default executor, which lives as long as the replica
  (were that thread to end, the engine would die at once: loud, not silent);
- the parent may already have died before the child got here: checked right after
  setting, and then the child exits.
Left uncovered: an engine core's start, while it imports vLLM (over 10 s on a busy
2-core machine) and until its parent answers its handshake; only then does vLLM
load plugins. If the parent dies in that window, the engine core waits for the
answer up to vLLM's handshake timeout (5 minutes, HANDSHAKE_TIMEOUT_MINS) with no
model loaded and no worker started, then exits (measured: still alive 330 s after
its parent's SIGKILL). When only the replica dies, the raylet's process-group
cleanup ends it at once; when the whole node goes away, nothing does.

Only processes started through `multiprocessing` bind themselves: the replica (a
Ray worker) and the workers of vLLM's Ray executor (Ray actors, which Ray stops
when their owner, the engine core, dies) are left as they are.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
_bound_pid: int | None = None
"""The process that bound itself (a forked child inherits this module's state)."""


def bind_to_parent() -> bool:
    """SIGKILL this process when its parent dies; True when bound (now or before).
    Exits at once when the parent is already gone."""
    global _bound_pid
    parent = multiprocessing.parent_process()
    if _bound_pid == os.getpid():
        return True
    if parent is None or not sys.platform.startswith("linux"):
        return False
    if threading.current_thread() is not threading.main_thread():
        logger.warning(
            "not bound to parent %d: called from thread %s, not the main thread",
            parent.pid,
            threading.current_thread().name,
        )
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent.pid:  # reparented: the parent died before the line above
        os.write(2, f"process {os.getpid()}: parent {parent.pid} is gone; exiting\n".encode())
        os._exit(1)
    _bound_pid = os.getpid()
    return True
