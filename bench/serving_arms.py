"""The systems bench/serving.py compares, each brought up once and driven by one call.

An arm is a name plus `one_request(prompt, max_tokens) -> Sample`. Every arm runs
the same engine arguments (`engine_kwargs` of the spec's first model) and the same
CPU pinning: the environment a Shardline replica gives its engine (the model's
`env`, then `configure_cpu_environment`) is given to vLLM's server process and to
Ray Serve LLM's replica (its `runtime_env`) alike. Ray Serve LLM and Shardline run
their engines inside the one embedded Ray cluster; vLLM's server is a plain
subprocess, started at the niceness Ray gives its workers.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Ray starts every worker process at this niceness (its `worker_niceness` config,
# env RAY_worker_niceness), and the engines Shardline and Ray Serve LLM start
# inherit it. On a machine shared with other work (load average 10 to 70 during our
# runs) a nice-0 vLLM server would win the CPU from both: it runs at the same value.
RAY_WORKER_NICENESS = int(os.environ.get("RAY_worker_niceness", "15"))  # noqa: SIM112 (Ray spells it so)


@dataclass
class Sample:
    """One streamed request as the client saw it."""

    ttft_s: float | None = None
    tokens: int = 0
    messages: int = 0
    """Messages that carried text or tokens (coalescing makes fewer, larger ones)."""
    gaps_s: list[float] = field(default_factory=list)
    """Inter-token latency as a user sees it: time between consecutive messages."""

    def arrived(self, now: float, start: float, last: float | None) -> float:
        if self.ttft_s is None:
            self.ttft_s = now - start
        else:
            self.gaps_s.append(now - last)
        self.messages += 1
        return now


@dataclass
class Arm:
    name: str
    one_request: object  # async (prompt, max_tokens) -> Sample
    url: str = ""


PROMPTS = [
    "The code of amber is",
    "Once upon a time there was a small village by the sea.",
    "Question: what is two plus three? Answer:",
    "Shardline serves language models on a cluster.",
]
"""What every arm's streams send, in turn: short prompts, so the load is decode."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_env(model) -> dict[str, str]:
    """What a Shardline replica's engine gets: the model's env, then the CPU pinning."""
    from shardline.engine.cpu_env import configure_cpu_environment
    from shardline.spec.placement import device

    env = dict(model.env)
    if device(model) == "cpu":
        configure_cpu_environment(model.parallelism.world_size, env)
    return env


def shared_engine_kwargs(model) -> dict:
    from shardline.engine.vllm_engine import engine_kwargs

    return engine_kwargs(model)


# --- HTTP/SSE (vLLM's server, Ray Serve LLM, Shardline's OpenAI door) ---------


def sse_arm(name: str, session, base_url: str, model: str) -> Arm:
    async def one_request(prompt: str, max_tokens: int) -> Sample:
        body = {
            "model": model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        sample, start = Sample(), time.perf_counter()
        last = None
        async with session.post(f"{base_url}/v1/completions", json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{name}: HTTP {resp.status}: {(await resp.text())[:200]}")
            async for line in resp.content:
                if not line.startswith(b"data: {"):
                    continue
                event = json.loads(line[6:])
                if event.get("choices"):
                    last = sample.arrived(time.perf_counter(), start, last)
                if event.get("usage"):
                    sample.tokens = event["usage"]["completion_tokens"]
        return sample

    return Arm(name, one_request, base_url)


async def wait_http(session, url: str, alive=lambda: True, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server behind {url} exited")
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(1)
    raise TimeoutError(f"{url} not healthy after {timeout_s} s")


def start_vllm_server(model, port: int, log: Path) -> subprocess.Popen:
    """`python -m vllm.entrypoints.openai.api_server` with the shared engine args."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", str(port)]
    for key, value in shared_engine_kwargs(model).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif isinstance(value, dict):
            cmd += [flag, json.dumps(value)]
        elif value not in (False, None):
            cmd += [flag, str(value)]
    env = {**os.environ, **engine_env(model)}
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        preexec_fn=_server_child,
    )


def _server_child() -> None:
    os.nice(RAY_WORKER_NICENESS)
    # PR_SET_PDEATHSIG (Linux): the server gets SIGTERM when this bench dies, killed or not.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def ray_llm_app(model):
    """Ray Serve LLM's OpenAI app (`build_openai_app`, as shipped) on the same engine."""
    from ray.serve.llm import LLMConfig, build_openai_app

    kwargs = {k: v for k, v in shared_engine_kwargs(model).items() if k not in ("model", "served_model_name")}
    config = LLMConfig(
        model_loading_config={"model_id": model.name, "model_source": str(ROOT / model.path)},
        engine_kwargs=kwargs,
        accelerator_config={"kind": "cpu"},
        runtime_env={"env_vars": engine_env(model)},
        deployment_config={"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}},
    )
    return build_openai_app({"llm_configs": [config]})


# --- Shardline over gRPC ----------------------------------------------------------


def grpc_arm(client, model: str) -> Arm:
    async def one_request(prompt: str, max_tokens: int) -> Sample:
        sample, start, last = Sample(), time.perf_counter(), None
        chunks = client.stream(model, prompt, max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        async for chunk in chunks:
            if chunk.token_ids:
                last = sample.arrived(time.perf_counter(), start, last)
                sample.tokens += len(chunk.token_ids)
        return sample

    return Arm("shardline gRPC", one_request)
