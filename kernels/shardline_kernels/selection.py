"""Which of our ops a deployment turned on, as carried to every vLLM process.

The replica writes `SHARDLINE_KERNELS` (e.g. "moe=shardline") before it starts the
engine; vLLM's engine-core and worker processes inherit it and the plugin reads it.
Unset means stock vLLM kernels. The quantization method needs no switch here: it is
only used when the engine is asked for `shardline-int8`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV_VAR = "SHARDLINE_KERNELS"
CHOICES = {"moe": ("vllm", "shardline")}


def encode(choices: Mapping[str, str]) -> str:
    return ",".join(f"{op}={impl}" for op, impl in sorted(choices.items()))


def decode(value: str) -> dict[str, str]:
    """Parse "op=impl,..."; unknown ops or implementations raise ValueError quoting them."""
    choices = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        op, _, impl = item.partition("=")
        if impl not in CHOICES.get(op, ()):
            raise ValueError(f"{ENV_VAR} entry {item!r}: expected one of {encode_options()}")
        choices[op] = impl
    return choices


def encode_options() -> str:
    return ", ".join(f"{op}={'|'.join(impls)}" for op, impls in CHOICES.items())


def active(op: str, env: Mapping[str, str] = os.environ) -> str:
    return decode(env.get(ENV_VAR, "")).get(op, CHOICES[op][0])
