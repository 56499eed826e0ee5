"""Live replica counts per deployment in this process (written by replica_set.py)."""

from __future__ import annotations

import asyncio
import threading


class ReplicaCounts:
    """Replica counts per (app, deployment), written by Serve's handle routers (on
    whatever thread or loop they run) and read by the router's pipeline."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def set(self, app: str, deployment: str, count: int) -> None:
        with self._lock:
            if self._counts.get((app, deployment)) == count:
                return
            self._counts[(app, deployment)] = count
            listeners = list(self._listeners)
        for loop, event in listeners:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def get(self, app: str, deployment: str) -> int | None:
        """The live count, or None while Serve has not pushed this deployment's set."""
        with self._lock:
            return self._counts.get((app, deployment))

    def listen(self) -> asyncio.Event:
        """An event (of the running loop) set after every change; clear it before reading."""
        event = asyncio.Event()
        with self._lock:
            self._listeners.append((asyncio.get_running_loop(), event))
        return event

    def unlisten(self, event: asyncio.Event) -> None:
        with self._lock:
            self._listeners = [(loop, e) for loop, e in self._listeners if e is not event]


COUNTS = ReplicaCounts()
"""One per process: every handle in this process reports into it."""
