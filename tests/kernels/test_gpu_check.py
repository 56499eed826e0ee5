"""`make gpu-check` (bench/kernels/gpu_check.py): what it does on a machine without
CUDA, what it imports, and its parity cases run in Triton's CPU interpreter.

Each runs in a fresh process: the script must work with torch and triton alone,
and the interpreter must be switched on before Triton is first imported.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "kernels" / "gpu_check.py"
# Fails the import of anything the GPU machine does not have.
BLOCK_IMPORTS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"vllm", "ray", "pydantic", "shardline", "yaml", "grpc"}:
            raise ImportError(f"gpu-check imported {name}")
sys.meta_path.insert(0, Block())
"""


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": "", **env},
    )


def test_without_cuda_it_says_so_in_one_line_and_exits_2(tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": ""},
    )
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.splitlines() == [
        "gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing checked"
    ]
    assert not out.exists()


def test_it_imports_only_torch_triton_and_our_kernels():
    code = BLOCK_IMPORTS + f"sys.path.insert(0, {str(SCRIPT.parent)!r})\nimport gpu_check\ngpu_check.load_kernels()\n"
    code += "import kernel_cases, parity\nprint(sorted(m for m in sys.modules if m.startswith('shardline_kernels')))"
    run = run_python(code)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "shardline_kernels.moe.triton_moe" in run.stdout and "shardline_kernels.int8.triton_linear" in run.stdout
    # The checkout's kernels, not an installed copy.
    check = run_python(code.replace("print(sorted(", "print(sys.modules['shardline_kernels'].__file__, sorted("))
    assert check.stdout.startswith(str(ROOT / "kernels" / "shardline_kernels"))


def test_its_parity_cases_pass_in_the_interpreter():
    """The GPU script's own parity loops (fp16 included), on CPU under TRITON_INTERPRET=1,
    with small shapes: proves the harness before a GPU machine runs it."""
    code = (
        BLOCK_IMPORTS
        + f"""
sys.path.insert(0, {str(SCRIPT.parent)!r})
import torch, gpu_check as g
g.DEVICE = "cpu"
g.MOE_SHAPES, g.MOE_PATTERNS, g.MOE_MAPS = [(19, 77, 45)], ["two-experts"], ["ep-rank1-of-2"]
g.INT8_SHAPES = [(5, 77, 45)]
kernels = g.load_kernels()
rows = g.moe_parity(kernels) + g.int8_parity(kernels)
bad = [r for r in rows if not r["ok"]]
print(len(rows), bad)
from kernel_cases import make_moe_case
case = make_moe_case(19, 77, 45, "random", "ep-rank0-of-2", torch.float32, False)
torch.testing.assert_close(g.torch_grouped_moe(*case), kernels["moe_ref"].fused_moe(*case))
"""
    )
    run = run_python(code, TRITON_INTERPRET="1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.strip() == f"{1 * 3 * 2 + 1 * 3 * 2 * 2} []"
