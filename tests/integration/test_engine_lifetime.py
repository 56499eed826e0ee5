"""No vLLM process outlives the replica that owns it, however the replica ends.

A replica's vLLM engine core and its worker are child processes of the replica
(vLLM's mp executor on CPU). They share its fate through the kernel
(kernels/shardline_kernels/lifetime.py), which is immediate; GONE_WITHIN_S is
generous for a busy machine.

- SIGKILL of the replica (a crash, the OOM killer) with its Ray node up: Ray 2.60's
  raylet also signals the dead worker's process group (SIGTERM, SIGKILL 0.2 s
  later), so this one held before too (gone in 0.25 s); it guards the invariant.
- The whole Ray node going away as with `ray stop --force` (SIGKILL of the raylet,
  then of every Ray process, the replica among them): nothing of Ray's is left to
  clean up. Before the binding, the engine core and its worker were still alive
  15 s later (by hand: minutes later, reparented to init, 16-25% of a core each).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from live import ROOT, deployed
from shardline.faults.processes import alive, engine_processes, kill

pytestmark = pytest.mark.integration

MODEL = "kv-small"
GONE_WITHIN_S = 15.0
BIN = Path(sys.executable).parent


def kv_small() -> dict:
    data = yaml.safe_load((ROOT / "deployments" / "kv-tiers.yaml").read_text())
    small = next(m for m in data["models"] if m["name"] == MODEL)
    small.pop("compression")
    return {**small, "path": str(ROOT / small["path"])}


def left_after(pids: tuple[int, ...], within_s: float) -> tuple[list[int], float]:
    """The `pids` still alive once all are gone or `within_s` passed, and the seconds waited."""
    began = time.monotonic()
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() - began < within_s:
        time.sleep(0.05)
    return left, time.monotonic() - began


def test_a_sigkilled_replica_takes_its_vllm_processes_with_it(ray_cluster):
    app = "shardline-lifetime"
    with deployed({"name": app, "models": [kv_small()], "router": {}, "rollout": {"drain_timeout_s": 1}}):
        [victim] = engine_processes(app, MODEL)
        vllm = (victim.engine_pid, *victim.worker_pids)
        assert len(vllm) == 2, victim  # the engine core and its one worker
        kill(victim.replica_pid)
        left, waited_s = left_after(vllm, GONE_WITHIN_S)
    print(f"replica SIGKILL: {len(vllm) - len(left)} of {len(vllm)} vLLM processes gone after {waited_s:.2f} s")
    assert left == [], f"vLLM processes {left} outlived their replica by {GONE_WITHIN_S} s"


def test_the_vllm_processes_of_a_ray_node_die_with_it(tmp_path):
    app = "shardline-lifetime-node"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": app, "models": [kv_small()], "router": {"port": 0}}))
    # A Ray node of this test's own, with its own token: other clusters on the machine stay untouched.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    port = _free_port()
    head = subprocess.Popen(
        [
            BIN / "ray",
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=4",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--block",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    spawned: set[int] = set()
    try:
        up = subprocess.run(
            [
                sys.executable,
                "-m",
                "shardline.cli.main",
                "up",
                str(spec),
                "--address",
                f"127.0.0.1:{port}",
                "--timeout",
                "540",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert up.returncode == 0, up.stderr[-3000:]
        [victim] = engine_processes(app, MODEL)
        vllm = (victim.engine_pid, *victim.worker_pids)
        replica = psutil.Process(victim.replica_pid)
        spawned = {p.pid for p in replica.children(recursive=True)}
        # What `ray stop --force` kills: the raylet first, then every other Ray process
        # of the node (its workers, the replica among them). Not what the replica started.
        node = [p for p in psutil.Process(head.pid).children(recursive=True) if p.pid not in spawned]
        for proc in sorted(node, key=lambda p: p.name() != "raylet"):
            proc.send_signal(signal.SIGKILL)
        left, waited_s = left_after(vllm, GONE_WITHIN_S)
        rest, _ = left_after(tuple(spawned), GONE_WITHIN_S - waited_s)
    finally:
        _stop_node(head, spawned)
    print(f"Ray node SIGKILL: {len(vllm) - len(left)} of {len(vllm)} vLLM processes gone after {waited_s:.2f} s")
    assert left == [], f"vLLM processes {left} outlived their Ray node by {GONE_WITHIN_S} s"
    assert rest == [], f"processes {rest} the replica started outlived their Ray node"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_node(head: subprocess.Popen, spawned: set[int]) -> None:
    """SIGKILL what is left of the test's node and of what its replica started."""
    try:
        pids = {head.pid, *(p.pid for p in psutil.Process(head.pid).children(recursive=True))}
    except psutil.NoSuchProcess:
        pids = set()
    for pid in pids | {pid for pid in spawned if alive(pid)}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    head.wait(timeout=30)
