"""A real Ray cluster started with `ray start --head`, as a user would, for one test
module: free ports, its own temp dir and auth token, torn down after.

The token reaches Ray one of two ways: `RAY_AUTH_MODE=token` + `RAY_AUTH_TOKEN` in
every command's environment (the default), or, with `plain=True`, as a new user has
it: a token file in the (test's own) home directory, `~/.ray/auth_token`, and no
RAY_AUTH_* variable at all; `ray start` then turns token auth on by itself.

Teardown ends exactly the processes of this cluster (found by its temp dir on
their command lines, plus their children), never other Ray clusters on the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalCluster:
    temp_dir: str
    gcs_port: int
    dashboard_port: int
    env: dict[str, str]

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def run(
        self, *command: str, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        env = self.env if env is None else env
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

    def working_dir_packages(self) -> list[Path]:
        found = Path(self.temp_dir).glob("session_*/runtime_resources/working_dir_files/_ray_pkg_*")
        return sorted(p for p in found if p.is_dir())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(num_cpus: int, plain: bool = False) -> LocalCluster:
    # Short path: Ray's unix sockets live under it (108-byte limit).
    temp_dir = tempfile.mkdtemp(prefix="sl-e2e-", dir="/tmp")
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        # The raylet waits this long for its dashboard agent; Ray's default (30 s) is
        # too short when the agent's imports share 2 cores with a test suite.
        "RAY_agent_register_timeout_ms": "300000",
    }
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    if plain:
        env["HOME"] = home_with_token(temp_dir)
    else:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    gcs, dashboard = free_port(), free_port()
    cluster = LocalCluster(temp_dir, gcs, dashboard, env)
    run = cluster.run(
        str(BIN / "ray"),
        "start",
        "--head",
        f"--port={gcs}",
        f"--dashboard-port={dashboard}",
        "--dashboard-host=127.0.0.1",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--num-cpus={num_cpus}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        timeout=120,
    )
    if run.returncode != 0:
        stop(cluster)
        raise RuntimeError(f"ray start failed:\n{run.stdout}\n{run.stderr}")
    return cluster


def home_with_token(temp_dir: str) -> str:
    """A home directory holding `.ray/auth_token`, as `ray get-auth-token --generate`
    (or any embedded `ray.init()`) leaves it."""
    home = Path(temp_dir) / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    return str(home)


def stop(cluster: LocalCluster) -> None:
    mine = [
        p
        for p in psutil.process_iter(["cmdline"])
        if cluster.temp_dir in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid()
    ]
    family = {p.pid: p for p in mine}
    for p in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            family.update({c.pid: c for c in p.children(recursive=True)})
    for p in family.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(list(family.values()), timeout=8)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=10)
    subprocess.run(["rm", "-rf", cluster.temp_dir], check=False)
