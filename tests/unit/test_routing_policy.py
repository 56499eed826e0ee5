"""Replica choice: prompt blocks, the prefix index and its eviction, the load guard,
session affinity and its fallback (policies/routing/), and the spec that selects them."""

import random

import pytest

from builders import make_spec
from shardline.errors import SpecError
from shardline.policies.routing import affinity, blocks
from shardline.policies.routing.affinity import PrefixIndex, SessionTable, choose
from shardline.spec.routing import RoutingSpec


def routing(**fields) -> RoutingSpec:
    return RoutingSpec.model_validate({"policy": "prefix_affinity", **fields})


def prompt(shared: int, own: int, seed: int, block: int = 4) -> tuple[int, ...]:
    """Block hashes of `shared` blocks common to every seed, then `own` blocks of this seed's."""
    tokens = list(range(shared * block)) + [10_000 * (seed + 1) + i for i in range(own * block)]
    return blocks.chain(tokens, block)


# blocks


def test_prompts_share_hashes_exactly_over_their_shared_whole_blocks():
    a, b = blocks.chain(list(range(10)), 4), blocks.chain([*range(9), 99], 4)
    assert len(a) == 2  # the partial third block (2 tokens) never counts
    assert a == b  # they differ only in the partial block
    c = blocks.chain([*range(5), 99, 6, 7, 8, 9], 4)
    assert c[0] == a[0] and c[1] != a[1]


def test_a_block_hash_covers_everything_before_it():
    # Same second block, different first: the chain makes the second hashes differ.
    assert blocks.chain([1, 2, 3, 4, 5, 6], 3)[1] != blocks.chain([9, 2, 3, 4, 5, 6], 3)[1]


def test_without_a_tokenizer_characters_stand_in_for_tokens():
    text = "x" * (blocks.CHARS_PER_TOKEN * 4 * 3 + 5)
    assert len(blocks.chain_chars(text, 4)) == 3


# the prefix index


def test_matched_counts_only_the_leading_run_of_blocks():
    index = PrefixIndex(100)
    index.record("r0", prompt(3, 2, seed=0))
    assert index.matched("r0", prompt(3, 2, seed=0)) == 5
    assert index.matched("r0", prompt(3, 4, seed=1)) == 3  # shares the first three only
    assert index.matched("r1", prompt(3, 2, seed=0)) == 0


def test_the_index_is_bounded_per_replica_and_forgets_the_least_recently_sent():
    index = PrefixIndex(8)
    old, new = prompt(0, 6, seed=0), prompt(0, 6, seed=1)
    index.record("r0", old)
    index.record("r0", new)
    assert index.size("r0") == 8
    assert index.matched("r0", new) == 6
    # Of the old prompt, the tail went first: its two leading blocks are still there.
    assert index.matched("r0", old) == 2


def test_a_replica_that_left_is_forgotten():
    index = PrefixIndex(100)
    index.record("r0", prompt(2, 0, seed=0))
    index.record("r1", prompt(2, 0, seed=0))
    index.keep({"r1"})
    assert (index.size("r0"), index.size("r1")) == (0, 2)


def test_the_session_table_is_bounded_lru():
    table = SessionTable(2)
    table.record("a", "r0")
    table.record("b", "r1")
    table.record("a", "r1")  # a is fresh again
    table.record("c", "r0")
    assert (table.get("a"), table.get("b"), table.get("c"), len(table)) == ("r1", None, "r0", 2)


# choose


def test_prefix_affinity_picks_the_replica_holding_the_longest_prefix():
    index = PrefixIndex(100)
    index.record("r0", prompt(1, 0, seed=0))
    index.record("r1", prompt(4, 0, seed=0))
    decision = choose(routing(), {"r0": 0, "r1": 2, "r2": 0}, prompt(4, 2, seed=5), index=index)
    assert (decision.reason, decision.replica, decision.matched_blocks) == (affinity.PREFIX, "r1", 4)
    assert decision.ranked[0] == ["r1"] and sorted(decision.ranked[1]) == ["r0", "r2"]  # where Serve goes if r1 is full


def test_without_a_match_the_request_goes_to_the_least_loaded_replica():
    index = PrefixIndex(100)
    index.record("r0", prompt(0, 3, seed=0))
    decision = choose(routing(min_matched_blocks=2), {"r0": 0, "r1": 1}, prompt(1, 3, seed=1), index=index)
    assert (decision.reason, decision.replica) == (affinity.NO_MATCH, "r0")
    decision = choose(routing(), {"r0": 3, "r1": 1}, prompt(0, 3, seed=1), index=index)
    assert (decision.reason, decision.replica, decision.ranked) == (affinity.NO_MATCH, "r1", [["r1", "r0"]])


@pytest.mark.parametrize(
    ("affine_queue", "least_queue", "guarded"),
    [
        (4, 0, False),  # a gap of 4 is allowed (max_queue_gap)
        (5, 0, True),  # gap 5 > 4 and 5 > 1.5 x 0
        (12, 7, True),  # gap 5 > 4 and 12 > 1.5 x 7 (= 10.5)
        (14, 10, False),  # gap 4: affine however long the queues
        (16, 11, False),  # gap 5, but 16 <= 1.5 x 11 (= 16.5)
        (46, 30, True),  # gap 16 and 46 > 1.5 x 30
        (45, 30, False),  # 45 <= 1.5 x 30
        (40, 36, False),
    ],
)
def test_the_load_guard_needs_both_the_gap_and_the_ratio(affine_queue, least_queue, guarded):
    index = PrefixIndex(100)
    index.record("affine", prompt(4, 0, seed=0))
    decision = choose(routing(), {"affine": affine_queue, "idle": least_queue}, prompt(4, 1, seed=0), index=index)
    assert decision.reason == (affinity.LOAD_GUARD if guarded else affinity.PREFIX)
    assert decision.replica == ("idle" if guarded else "affine")


def test_a_hot_prefix_under_a_burst_spreads_within_the_guard():
    """One prefix, 40 requests routed in a row (none finishing): queues stay within the guard."""
    spec, index, loads = routing(), PrefixIndex(1000), {"r0": 0, "r1": 0}
    hot = prompt(8, 0, seed=0)
    for _ in range(40):
        decision = choose(spec, loads, hot, index=index, rng=random.Random(0))
        index.record(decision.replica, hot)
        loads[decision.replica] += 1
    high, low = max(loads.values()), min(loads.values())
    assert high - low <= spec.load_guard.max_queue_gap + 1 or high <= spec.load_guard.max_queue_ratio * low + 1
    assert high <= 2 * (sum(loads.values()) / 2)
    assert low >= 15


def test_session_affinity_follows_the_session_then_falls_back_to_prefix_affinity():
    spec, index, sessions = routing(policy="session"), PrefixIndex(100), SessionTable(10)
    index.record("r1", prompt(4, 0, seed=0))
    sessions.record("alice", "r0")
    decision = choose(spec, {"r0": 1, "r1": 0}, prompt(4, 0, seed=0), "alice", index, sessions)
    assert (decision.reason, decision.replica) == (affinity.SESSION, "r0")
    # An unknown session, or one whose replica is gone: prefix affinity.
    for session, loads in (("bob", {"r0": 1, "r1": 0}), ("alice", {"r1": 0, "r2": 0})):
        decision = choose(spec, loads, prompt(4, 0, seed=0), session, index, sessions)
        assert (decision.reason, decision.replica) == (affinity.PREFIX, "r1")
    # The session's replica is too busy: the load guard applies to sessions too.
    decision = choose(spec, {"r0": 9, "r1": 0, "r2": 0}, prompt(0, 1, seed=3), "alice", index, sessions)
    assert decision.reason == affinity.NO_MATCH and decision.replica in ("r1", "r2")


def test_least_loaded_ranks_every_replica_by_queue():
    decision = choose(RoutingSpec(policy="least_loaded"), {"a": 3, "b": 0, "c": 1})
    assert (decision.reason, decision.ranked) == (affinity.LEAST_LOADED, [["b", "c", "a"]])


def test_equal_replicas_share_cold_traffic():
    index, loads = PrefixIndex(100), {"r0": 0, "r1": 0}
    chosen = {choose(routing(), loads, prompt(0, 2, seed=s), index=index).replica for s in range(20)}
    assert chosen == {"r0", "r1"}


# the spec


def test_routing_defaults_to_serves_power_of_two_choices():
    model = make_spec().models[0]
    assert model.routing.policy == "default" and not model.routing.by_prompt
    assert (model.routing.load_guard.max_queue_gap, model.routing.load_guard.max_queue_ratio) == (4, 1.5)


@pytest.mark.parametrize(
    ("model", "blocks_expected"),
    [
        ({}, 128),  # vLLM's CPU default
        ({"resources": {"gpu": 1.0}}, 16),  # vLLM's CUDA default
        ({"engine_args": {"block_size": 64}}, 64),
        ({"engine_args": {"block_size": 32}, "routing": {"policy": "prefix_affinity", "block_tokens": 64}}, 64),
    ],
)
def test_routing_blocks_default_to_the_engines_block_size(model, blocks_expected):
    assert make_spec(model=model).models[0].routing_block_tokens == blocks_expected


def test_routing_blocks_smaller_than_the_engines_are_refused_with_both_values():
    with pytest.raises(SpecError, match=r"routing.block_tokens \(16\) is smaller than the engine's block size \(128\)"):
        make_spec(model={"routing": {"policy": "prefix_affinity", "block_tokens": 16}})


@pytest.mark.parametrize(
    ("routing_fields", "message"),
    [
        ({"policy": "random"}, "policy"),
        ({"block_tokens": 0}, "greater than or equal to 1"),
        ({"max_blocks_per_replica": 0}, "greater than or equal to 1"),
        ({"load_guard": {"max_queue_ratio": 0.5}}, "greater than or equal to 1"),
        ({"load_guard": {"max_queue_gap": -1}}, "greater than or equal to 0"),
        ({"policy": "session", "sesions": 3}, "sesions"),
    ],
)
def test_bad_routing_fields_are_refused(routing_fields, message):
    with pytest.raises(SpecError, match=message):
        make_spec(model={"routing": routing_fields})
