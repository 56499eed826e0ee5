"""Shardline's own ops, loaded into vLLM through its `vllm.general_plugins` entry point.

Each op has a plain PyTorch reference (`reference.py`, same signature) beside its
implementations (`cpu.py`, `triton_*.py`); `plugin.register` wires the chosen ones
into every vLLM process. Which ops are active is chosen per deployment by the spec
and reaches the engine processes through `SHARDLINE_KERNELS` (see `selection.py`).
The same entry point makes each engine process die with its parent (`lifetime.py`).
"""
