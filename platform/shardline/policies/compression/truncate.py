"""`truncate_middle`: keep the head and the tail, drop the middle (the baseline)."""

from __future__ import annotations

from shardline.policies.compression.units import Layout


def select(lay: Layout, budget: int) -> set[int]:
    free = lay.free
    room = budget - lay.protected_tokens
    head = _prefix(lay, free, room // 2)
    tail = _prefix(lay, [i for i in reversed(free) if i not in head], room - _tokens(lay, head))
    return head | tail


def _prefix(lay: Layout, order: list[int], room: int) -> set[int]:
    """The longest prefix of `order` that fits `room` tokens."""
    keep, used = set(), 0
    for i in order:
        used += lay.units[i].tokens
        if used > room:
            break
        keep.add(i)
    return keep


def _tokens(lay: Layout, keep: set[int]) -> int:
    return sum(lay.units[i].tokens for i in keep)
