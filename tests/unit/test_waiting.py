"""The suite's one waiting helper (tests/waiting.py): it returns the condition's first
truthy value and fails quoting the message and the last value seen."""

import asyncio
import itertools

import pytest

from waiting import Not, eventually, eventually_async


def test_eventually_returns_the_first_truthy_value():
    counter = itertools.count()
    assert eventually(lambda: next(counter) >= 3 and "done", interval_s=0) == "done"


def test_eventually_fails_quoting_the_message_and_the_last_value():
    with pytest.raises(AssertionError, match=r"^queue empty: still not true after 0.05 s \(last value: \[\]\)$"):
        eventually(lambda: [], timeout_s=0.05, message="queue empty")


async def test_eventually_async_awaits_a_coroutine_condition_without_blocking_the_loop():
    flag = asyncio.Event()
    asyncio.get_running_loop().call_soon(flag.set)  # runs only if the helper yields to the loop

    async def is_set():
        return flag.is_set()

    assert await eventually_async(is_set) is True


async def test_eventually_async_fails_quoting_the_message_and_the_last_value():
    with pytest.raises(AssertionError, match=r"in flight 0: still not true after 0.05 s \(last value: 0\)"):
        await eventually_async(lambda: 0, timeout_s=0.05, message="in flight 0")


def test_a_condition_can_say_what_it_saw_instead():
    with pytest.raises(AssertionError, match=r"router serving: .* \(last value: status said DEPLOYING\)"):
        eventually(lambda: Not("status said DEPLOYING"), timeout_s=0.05, message="router serving")
