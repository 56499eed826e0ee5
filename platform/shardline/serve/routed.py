"""Routing decisions in this process, from Serve's request router to the replica call.

Serve's request router (replica_set.py) runs inside Serve's handle machinery, on its
own loop, where the request's span is not current. It leaves each decision here,
keyed by request id; the backend's stream (deployment_handles.py), running in the
replica call's span, takes it once the first delta arrives (routing is done by
then) and puts it on that span. Bounded: a decision nobody took (a call cancelled
before its first delta) is dropped oldest first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

MAX_DECISIONS = 10_000


@dataclass(frozen=True, slots=True)
class Routed:
    policy: str
    reason: str
    replica: str
    matched_blocks: int
    prompt_blocks: int


class RoutedRequests:
    def __init__(self, max_decisions: int = MAX_DECISIONS) -> None:
        self._max = max_decisions
        self._decisions: OrderedDict[str, Routed] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, request_id: str, routed: Routed) -> None:
        with self._lock:
            self._decisions[request_id] = routed
            self._decisions.move_to_end(request_id)
            while len(self._decisions) > self._max:
                self._decisions.popitem(last=False)

    def pop(self, request_id: str) -> Routed | None:
        with self._lock:
            return self._decisions.pop(request_id, None)


ROUTED = RoutedRequests()
"""One per process, like replica_counts.COUNTS."""
