"""Checks the spec's vLLM engine-args pass-through without importing vLLM.

`vllm_engine_args.txt` lists the fields of `vllm.engine.arg_utils.AsyncEngineArgs`
for the vLLM version we pin; `tests/unit/test_codegen.py` fails when the
installed vLLM disagrees, and `make engine-args` regenerates it.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources
from typing import Any

# Keys the spec sets itself: a pass-through value would silently fight it.
OWNED_BY_SPEC = {
    "model": "path",
    "tokenizer": "path",
    "served_model_name": "name",
    "dtype": "dtype",
    "max_model_len": "max_model_len",
    "tensor_parallel_size": "parallelism.tensor",
    "pipeline_parallel_size": "parallelism.pipeline",
    "enable_expert_parallel": "parallelism.expert",
    "distributed_executor_backend": "resources.gpu (Ray executor on GPU, mp on CPU)",
    "data_parallel_size": "replicas (one engine per replica)",
    "quantization": "quantization",
}


@cache
def known_engine_args() -> frozenset[str]:
    text = resources.files(__package__).joinpath("vllm_engine_args.txt").read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def check_engine_args(args: dict[str, Any]) -> None:
    """Raise ValueError naming every unknown or spec-owned key."""
    problems = []
    for key in sorted(args):
        if key in OWNED_BY_SPEC:
            problems.append(f"'{key}' is set by the spec's {OWNED_BY_SPEC[key]}; set it there")
        elif key not in known_engine_args():
            near = difflib.get_close_matches(key, known_engine_args(), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            problems.append(f"'{key}' is not a vLLM EngineArgs field{hint}")
    if problems:
        raise ValueError("; ".join(problems))
