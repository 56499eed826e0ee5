"""A vLLM child process that our plugin bound to its parent dies with that parent.

Each case builds the chain a replica has with its engine core: this test starts a
parent process, which starts a child (both with multiprocessing's spawn, as vLLM in
a Ray actor does); the child binds itself (or not) and sleeps. Then the parent is
SIGKILLed, so that nothing of the parent's can clean up.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from shardline_kernels import lifetime

GONE_WITHIN_S = 10.0
spawn = multiprocessing.get_context("spawn")


def _child(mode: str, report) -> None:
    if mode == "bind-late":  # the parent dies before the child binds itself
        while os.getppid() == multiprocessing.parent_process().pid:
            time.sleep(0.01)
    if mode != "unbound":
        assert lifetime.bind_to_parent()
        assert lifetime.bind_to_parent()  # a second call (vLLM may call its plugins twice) changes nothing
    report.send(os.getpid())
    time.sleep(600)


def _parent(mode: str, report) -> None:
    child = spawn.Process(target=_child, args=(mode, report))
    child.start()
    if mode == "bind-late":
        report.send(child.pid)
    time.sleep(600)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def child_lives_after_parent_killed(mode: str, wait_s: float) -> bool:
    """Whether the child still lives `wait_s` after its parent's SIGKILL (the test
    then kills it)."""
    receive, report = spawn.Pipe(duplex=False)
    parent = spawn.Process(target=_parent, args=(mode, report))
    parent.start()
    child = receive.recv()  # once the child is bound; "bind-late": before it can be
    os.kill(parent.pid, signal.SIGKILL)
    parent.join()
    deadline = time.monotonic() + wait_s
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    lives = alive(child)
    if lives:
        os.kill(child, signal.SIGKILL)
    return lives


def test_a_bound_child_dies_with_its_sigkilled_parent():
    assert not child_lives_after_parent_killed("bind", GONE_WITHIN_S)


def test_a_child_whose_parent_died_before_it_bound_itself_exits():
    assert not child_lives_after_parent_killed("bind-late", GONE_WITHIN_S)


def test_an_unbound_child_outlives_its_parent():
    """The negative control: without the binding, the harness sees an orphan."""
    assert child_lives_after_parent_killed("unbound", 1.0)


def test_a_process_not_started_by_multiprocessing_stays_unbound():
    assert multiprocessing.parent_process() is None
    assert lifetime.bind_to_parent() is False
