"""Waiting in tests: poll a condition until it holds, or fail saying what was last seen.

The one way a test waits for something to happen (no hand-written sleep loops): the
condition is polled every `interval_s`; its first truthy value is returned; after
`timeout_s` the test fails with `message` and the condition's last value (return
`Not("why")` to say what was seen instead). The timeouts are generous on purpose:
they only bound a failure, so a busy machine waits longer instead of failing.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

TIMEOUT_S = 30.0
INTERVAL_S = 0.01


class Not:
    """A falsy condition value that says what was seen; a failed wait quotes it."""

    def __init__(self, why: str):
        self.why = why

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return self.why


def eventually(
    condition: Callable[[], Any],
    timeout_s: float = TIMEOUT_S,
    interval_s: float = INTERVAL_S,
    message: str = "condition",
) -> Any:
    """Poll `condition()` (blocking) until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(message, timeout_s, value))
        time.sleep(interval_s)


async def eventually_async(
    condition: Callable[[], Any | Awaitable[Any]],
    timeout_s: float = TIMEOUT_S,
    interval_s: float = INTERVAL_S,
    message: str = "condition",
) -> Any:
    """`eventually` for the event loop: sleeps without blocking it, and `condition`
    may be a coroutine function."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(_failure(message, timeout_s, value))
        await asyncio.sleep(interval_s)


def _failure(message: str, timeout_s: float, value: Any) -> str:
    return f"{message}: still not true after {timeout_s:g} s (last value: {value!r})"
