"""Which replica gets a request: least loaded, prefix affinity, session affinity.

`choose` ranks the live replicas of one model for one request, from their queue
lengths (Serve's count of requests each holds), the request's prompt blocks
(blocks.py) and its session key, and the router's memory of what it sent where
(`PrefixIndex`, `SessionTable`). It returns ranks, best first: Serve takes the
replica with the shortest queue within the first rank that has one with room, so
a full affine replica falls through to the next rank instead of queueing.

The prefix index is the router's approximation of each replica's prefix cache: the
blocks it recently sent there, bounded per replica with least-recently-sent
eviction. A request's blocks are touched last block first, so its leading blocks
(shared by the most prompts) are the freshest and the last forgotten, as vLLM's
own cache frees a finished request's tail first.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shardline.spec.routing import RoutingSpec

# Why a replica was chosen (the `reason` label of shardline_routing_decisions).
DEFAULT = "default"  # Serve's power of two choices
LEAST_LOADED = "least_loaded"  # policy least_loaded
PREFIX = "prefix"  # the replica holding the longest run of the prompt's leading blocks
SESSION = "session"  # the replica that served the session last
NO_MATCH = "no_match"  # no replica holds min_matched_blocks: least loaded
LOAD_GUARD = "load_guard"  # the affine replica was too busy: least loaded
REASONS = (DEFAULT, LEAST_LOADED, PREFIX, SESSION, NO_MATCH, LOAD_GUARD)


@dataclass(frozen=True, slots=True)
class Decision:
    ranked: list[list[str]]
    """Replica ids in ranks, best first."""
    reason: str
    replica: str
    """The replica the policy expects to get the request (first of the first rank)."""
    matched_blocks: int = 0
    """Leading prompt blocks the router predicts that replica holds."""


class PrefixIndex:
    """Per replica, the prompt blocks (chained hashes) recently sent there, LRU-bounded."""

    def __init__(self, max_blocks_per_replica: int):
        self._max = max_blocks_per_replica
        self._blocks: dict[str, OrderedDict[int, None]] = {}

    def matched(self, replica: str, blocks: Sequence[int]) -> int:
        """How many of `blocks`' leading blocks were sent to `replica` (and not forgotten)."""
        held = self._blocks.get(replica)
        if not held:
            return 0
        count = 0
        for block in blocks:
            if block not in held:
                break
            count += 1
        return count

    def record(self, replica: str, blocks: Sequence[int]) -> None:
        held = self._blocks.setdefault(replica, OrderedDict())
        for block in reversed(blocks):  # the leading blocks end freshest
            held[block] = None
            held.move_to_end(block)
        while len(held) > self._max:
            held.popitem(last=False)

    def keep(self, replicas: set[str]) -> None:
        """Forget replicas that left the set (their caches went with them)."""
        for gone in self._blocks.keys() - replicas:
            del self._blocks[gone]

    def size(self, replica: str) -> int:
        return len(self._blocks.get(replica, ()))


class SessionTable:
    """Session key -> the replica that served it last, LRU-bounded."""

    def __init__(self, max_sessions: int):
        self._max = max_sessions
        self._owners: OrderedDict[str, str] = OrderedDict()

    def get(self, session: str) -> str | None:
        return self._owners.get(session)

    def record(self, session: str, replica: str) -> None:
        self._owners[session] = replica
        self._owners.move_to_end(session)
        while len(self._owners) > self._max:
            self._owners.popitem(last=False)

    def __len__(self) -> int:
        return len(self._owners)


def choose(
    routing: RoutingSpec,
    loads: Mapping[str, int],
    blocks: Sequence[int] = (),
    session: str = "",
    index: PrefixIndex | None = None,
    sessions: SessionTable | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """Rank the replicas in `loads` (id -> queue length) for one request under
    `routing.policy` (`default` is Serve's own and never reaches here: ranked least loaded)."""
    if not loads:
        return Decision([], LEAST_LOADED, "")
    by_load = least_loaded(loads, rng)
    if routing.policy not in ("prefix_affinity", "session") or index is None:
        return Decision([by_load], LEAST_LOADED, by_load[0])
    if routing.policy == "session" and session and sessions is not None:
        owner = sessions.get(session)
        if owner in loads and not overloaded(routing, loads[owner], loads[by_load[0]]):
            return Decision(_first(owner, by_load), SESSION, owner, index.matched(owner, blocks))
    matched = {r: index.matched(r, blocks) for r in by_load}
    best = max(by_load, key=lambda r: matched[r])  # ties: the shorter queue (by_load's order)
    if matched[best] < routing.min_matched_blocks:
        return Decision([by_load], NO_MATCH, by_load[0], matched[by_load[0]])
    if overloaded(routing, loads[best], loads[by_load[0]]):
        return Decision([by_load], LOAD_GUARD, by_load[0], matched[by_load[0]])
    return Decision(_first(best, by_load), PREFIX, best, matched[best])


def least_loaded(loads: Mapping[str, int], rng: random.Random | None = None) -> list[str]:
    """Replica ids by queue length, ties in random order (so equal replicas share cold traffic)."""
    ids = list(loads)
    (rng or random).shuffle(ids)
    return sorted(ids, key=lambda r: loads[r])


def overloaded(routing: RoutingSpec, queue: int, least: int) -> bool:
    """The load guard: `queue` exceeds the least loaded replica's both by more than
    max_queue_gap and by more than max_queue_ratio times."""
    guard = routing.load_guard
    return queue - least > guard.max_queue_gap and queue > guard.max_queue_ratio * least


def _first(replica: str, by_load: list[str]) -> list[list[str]]:
    """`replica` alone, then the others least loaded first (where Serve goes when it is full)."""
    rest = [r for r in by_load if r != replica]
    return [[replica], rest] if rest else [[replica]]
