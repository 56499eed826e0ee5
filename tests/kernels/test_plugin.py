"""The vLLM plugin entry point: what it turns on, per the deployment's selection.

Each case runs in a fresh interpreter, as vLLM's engine processes do, so the
class patching never leaks into this test process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shardline_kernels import selection

PROBE = """
import json
from vllm.plugins import load_general_plugins
from vllm.model_executor.layers.fused_moe.experts import cpu_moe
from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS, get_quantization_config
load_general_plugins()
from shardline_kernels import plugin
plugin.register()  # a second call must change nothing
apply = cpu_moe.X86CPUUnquantizedExperts.apply
print(json.dumps({
    "moe": apply.__module__,
    "int8": get_quantization_config("shardline-int8").__name__,
    "registered_once": QUANTIZATION_METHODS.count("shardline-int8") == 1,
}))
"""


def run_probe(kernels: str) -> dict:
    env = {"PATH": "/usr/bin:/bin", selection.ENV_VAR: kernels}
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_plugin_installs_our_moe_kernel_when_selected():
    found = run_probe("moe=shardline")
    assert found == {
        "moe": "shardline_kernels.moe.vllm_experts",
        "int8": "ShardlineInt8Config",
        "registered_once": True,
    }


def test_plugin_leaves_vllm_moe_alone_by_default():
    found = run_probe("")
    assert found["moe"].startswith("vllm.") and found["int8"] == "ShardlineInt8Config"


@pytest.mark.parametrize(
    "value, message",
    [("moe=fast", "'moe=fast'"), ("attention=shardline", "'attention=shardline'")],
    ids=["unknown-impl", "unknown-op"],
)
def test_selection_rejects_unknown_entries_quoting_them(value, message):
    with pytest.raises(ValueError, match=f"SHARDLINE_KERNELS entry {message}: expected one of moe=vllm|shardline"):
        selection.decode(value)


def test_selection_round_trips_and_defaults_to_vllm():
    assert selection.decode(selection.encode({"moe": "shardline"})) == {"moe": "shardline"}
    assert selection.active("moe", {}) == "vllm"
    assert selection.active("moe", {selection.ENV_VAR: "moe=shardline"}) == "shardline"
