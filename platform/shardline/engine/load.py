"""How loaded an engine is right now: the signals the autoscaler reads.

The engine's stat logger (vLLM calls it after every engine step, with the
scheduler's own counts) feeds a `LoadTracker`; the replica reads `load()` each time
Serve asks for its autoscaling metrics. Nothing is scraped or parsed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineLoad:
    waiting: int = 0
    """Requests waiting for a slot in the running batch (vLLM's num_requests_waiting)."""
    running: int = 0
    """Requests in the running batch."""
    kv_cache_usage: float = 0.0
    """Fraction of KV-cache blocks in use, 0..1."""
    ttft_s: float = 0.0
    """The slowest time to first token among the requests whose first token came in
    the tracker's window (0: none did)."""


class LoadTracker:
    def __init__(self, window_s: float):
        self._window_s = window_s
        """First tokens older than this no longer count as recent (`autoscaling.ttft_window_s`)."""
        self._latest = EngineLoad()
        self._ttfts: deque[tuple[float, float]] = deque()

    def record(self, waiting: int, running: int, kv_cache_usage: float, ttfts: Iterable[float], now: float) -> None:
        """One engine step's counts, and the TTFTs of the requests that got their first token in it."""
        self._latest = EngineLoad(waiting, running, kv_cache_usage)
        self._ttfts.extend((now, t) for t in ttfts)

    def load(self, now: float) -> EngineLoad:
        while self._ttfts and self._ttfts[0][0] < now - self._window_s:
            self._ttfts.popleft()
        slowest = max((t for _, t in self._ttfts), default=0.0)
        latest = self._latest
        return EngineLoad(latest.waiting, latest.running, latest.kv_cache_usage, slowest)
