"""Triton kernels run on a GPU when there is one, else in Triton's CPU interpreter.

The interpreter must be switched on (TRITON_INTERPRET=1) before Triton is first
imported, and must not leak into the vLLM engines other tests start, so on CPU
`interpreted/` is collected only inside the fresh process that
`test_triton_interpreted.py` starts with the switch set.
"""

import os

import torch

collect_ignore = [] if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1" else ["interpreted"]
