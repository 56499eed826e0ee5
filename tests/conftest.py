import asyncio
import gc
import sys
import threading
from pathlib import Path

import pytest

# tests/ holds shared helpers (fakes, builders); make them importable by name.
sys.path.insert(0, str(Path(__file__).parent))

_TASK_DUMP = pytest.StashKey[threading.Timer]()
TASK_DUMP_LEAD = 0.98
"""The task dump fires at this fraction of the test's timeout, before pytest-timeout's own."""


def pytest_timeout_set_timer(item, settings):
    """pytest-timeout dumps every thread's stack when a test times out, and for an
    async test the main thread only shows the event loop waiting in select(). So a
    moment before, print where every asyncio task is awaiting (it shows up under
    "Captured stderr" in the timeout report). Returns None: pytest-timeout still
    sets its own timer."""
    if settings.timeout and settings.timeout > 0:
        timer = threading.Timer(settings.timeout * TASK_DUMP_LEAD, _print_asyncio_tasks)
        timer.daemon = True
        timer.start()
        item.stash[_TASK_DUMP] = timer


def pytest_timeout_cancel_timer(item):
    timer = item.stash.get(_TASK_DUMP, None)
    if timer is not None:
        timer.cancel()


def _print_asyncio_tasks() -> None:
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]
    for loop in loops:
        for task in asyncio.all_tasks(loop):
            task.print_stack(file=sys.stderr)
    sys.stderr.flush()
