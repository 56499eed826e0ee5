"""How the CLI prints what a model's engine reports it runs (`shardline status`, the demo).

Takes either the engine's own report (`EngineInfo`, asked through Serve) or a
ListModels `ModelInfo` (asked over gRPC): both name the fields alike. A model whose
engine has not answered is "unknown", never the spec's value.
"""

from __future__ import annotations

from typing import Any

UNKNOWN = "unknown"
HEADERS = ["model", "TP", "PP", "DP", "EP", "quantization", "workers", "experts per rank"]


def engine_row(name: str, info: Any | None) -> tuple:
    """One table row; `info` None (or a ModelInfo with `reported` false): unknown."""
    if info is None or not getattr(info, "reported", True):
        return (name, *[UNKNOWN] * (len(HEADERS) - 1))
    return (
        name,
        info.tensor_parallel_size,
        info.pipeline_parallel_size,
        info.data_parallel_size,
        expert_parallel(info),
        info.quantization or "none",
        info.workers,
        "/".join(map(str, info.experts_per_rank)) + f" of {info.experts}" if info.experts else "-",
    )


def engine_line(name: str, info: Any | None) -> str:
    """The same, on one line: `kv-large: TP=2 PP=1 DP=1 EP=off quantization=none workers=2`."""
    row = engine_row(name, info)
    if row[1] == UNKNOWN:
        return f"{name}: engine report unknown (no replica answered yet)"
    fields = " ".join(f"{h}={v}" for h, v in zip(HEADERS[1:], row[1:]) if v != "-")
    return f"{name}: {fields.replace('experts per rank=', 'experts/rank=')}"


def expert_parallel(info: Any) -> str:
    return f"on ({info.expert_parallel_size})" if info.expert_parallel else "off"
