"""Prints vLLM's EngineArgs field names (`make engine-args` regenerates the spec's list)."""

from __future__ import annotations

import dataclasses


def engine_arg_names() -> list[str]:
    from vllm.engine.arg_utils import AsyncEngineArgs

    return sorted(f.name for f in dataclasses.fields(AsyncEngineArgs) if not f.name.startswith("_"))


if __name__ == "__main__":
    print("\n".join(engine_arg_names()))
