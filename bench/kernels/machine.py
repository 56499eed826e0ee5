"""What every kernel benchmark records: the machine, a timer and its memory bandwidth."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parents[1] / "results"


def describe() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    flags = Path("/proc/cpuinfo").read_text()
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "amx": "amx_tile" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "torch": torch.__version__,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def best_seconds(fn, repeat: int = 20, warmup: int = 3) -> float:
    """Fastest of `repeat` calls: the least disturbed by the machine's other work."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved_best(arms: dict, rounds: int = 3, repeat: int = 10, warmup: int = 2) -> dict[str, float]:
    """Fastest call of each arm, the arms taking turns for `rounds` rounds, so a
    drift in the machine's load reaches every arm alike."""
    best = dict.fromkeys(arms, float("inf"))
    for _ in range(rounds):
        for name, fn in arms.items():
            best[name] = min(best[name], best_seconds(fn, repeat, warmup))
    return best


# More than this machine's last-level cache (480 MiB L3 here), so data read by a
# timed loop comes from DRAM, not from the cache the previous call warmed.
STREAM_BYTES = 1 << 30


def copy_bandwidth_gbs(mib: int = STREAM_BYTES >> 20) -> float:
    """Memory bandwidth from a large tensor copy (bytes read + bytes written)."""
    src = torch.ones(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    seconds = best_seconds(lambda: dst.copy_(src), repeat=10, warmup=2)
    return 2 * src.numel() * 4 / seconds / 1e9


def rotating(tensors: tuple, total_bytes: int = STREAM_BYTES) -> list[tuple]:
    """Copies of `tensors` filling `total_bytes`, to cycle through so each call reads from DRAM."""
    size = sum(t.numel() * t.element_size() for t in tensors)
    return [tuple(t.clone() for t in tensors) for _ in range(max(2, -(-total_bytes // size)))]


def cycling(fn, copies: list[tuple]):
    """A zero-argument call running `fn(*copy)` on the next copy each time."""
    state = {"i": 0}

    def call():
        state["i"] = (state["i"] + 1) % len(copies)
        return fn(*copies[state["i"]])

    return call


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return "" if value is None else str(value)


def write(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
