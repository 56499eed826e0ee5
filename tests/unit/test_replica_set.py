"""The router's readiness follows the replica set Serve pushes to its handles
(serve/replica_set.py), not a status poll."""

import asyncio
import json
import threading
from dataclasses import dataclass
from types import SimpleNamespace

from prometheus_client import REGISTRY
from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID
from ray.serve.request_router import PendingRequest

from builders import make_spec
from shardline.generation import GenerationRequest
from shardline.serve import deployment_handles
from shardline.serve.replica_counts import COUNTS, ReplicaCounts
from shardline.serve.replica_set import AffinityRouter, ReplicaSetRouter, request_router_config
from shardline.serve.routed import ROUTED


@dataclass
class FakeReplica:
    """What Serve's locality bookkeeping reads of a running replica."""

    replica_id: ReplicaID
    node_id: str = "node-a"
    availability_zone: str | None = None
    multiplexed_model_ids: frozenset = frozenset()
    max_ongoing_requests: int = 256


class FakeHandle:
    def options(self, **_):
        return self


def replicas(deployment: DeploymentID, n: int) -> list[FakeReplica]:
    return [FakeReplica(ReplicaID(f"r{i}", deployment)) for i in range(n)]


async def test_a_change_pushed_from_another_thread_wakes_the_listener():
    counts = ReplicaCounts()
    event = counts.listen()
    threading.Thread(target=counts.set, args=("app", "llm-a", 2)).start()
    await asyncio.wait_for(event.wait(), 10)
    assert counts.get("app", "llm-a") == 2 and counts.get("app", "llm-b") is None


async def test_the_request_router_publishes_every_replica_set_serve_pushes():
    deployment = DeploymentID(name="llm-pushed", app_name="app-pushed")
    router = ReplicaSetRouter(deployment_id=deployment, handle_source=DeploymentHandleSource.UNKNOWN)
    assert COUNTS.get("app-pushed", "llm-pushed") is None
    both = replicas(deployment, 2)
    router.update_replicas(both)
    assert COUNTS.get("app-pushed", "llm-pushed") == 2
    # A rolling update: the new replicas join before the old ones leave.
    new = [FakeReplica(ReplicaID(f"n{i}", deployment)) for i in range(2)]
    router.update_replicas(both + new)
    assert COUNTS.get("app-pushed", "llm-pushed") == 4
    router.update_replicas(new)
    assert COUNTS.get("app-pushed", "llm-pushed") == 2
    router.on_replica_actor_died(new[0].replica_id)  # a call found it dead
    assert COUNTS.get("app-pushed", "llm-pushed") == 1
    chosen = await router.choose_replicas(list(router.curr_replicas.values()))
    assert [[r.replica_id for r in group] for group in chosen] == [[new[1].replica_id]]


async def test_the_backend_asks_serve_status_only_for_models_not_pushed_yet(monkeypatch):
    polled = []

    async def fake_poll(self):
        polled.append(True)
        return {"pushed": 0, "pending": 3}

    monkeypatch.setattr(deployment_handles.ServeBackend, "_polled", fake_poll)
    backend = deployment_handles.ServeBackend("app-mixed", {"pushed": FakeHandle(), "pending": FakeHandle()})
    COUNTS.set("app-mixed", "llm-pushed", 2)
    assert await backend.ready_replicas() == {"pushed": 2, "pending": 3}
    COUNTS.set("app-mixed", "llm-pending", 1)
    assert await backend.ready_replicas() == {"pushed": 2, "pending": 1}
    assert len(polled) == 1


def pending(request_id: str, prefix_blocks=(), session="") -> PendingRequest:
    request = GenerationRequest(request_id, "p", 4, prefix_blocks=tuple(prefix_blocks), session=session)
    return PendingRequest(args=[request], kwargs={}, metadata=SimpleNamespace(internal_request_id=f"i-{request_id}"))


def affinity_router(deployment: DeploymentID, n: int, **routing) -> tuple[AffinityRouter, list[FakeReplica]]:
    router = AffinityRouter(
        deployment_id=deployment, handle_source=DeploymentHandleSource.UNKNOWN, use_replica_queue_len_cache=True
    )
    router.initialize_state(routing={"policy": "prefix_affinity", **routing}, model="m")
    both = replicas(deployment, n)
    router.update_replicas(both)
    for r in both:
        router.on_new_queue_len_info(r.replica_id, 0)
    return router, both


async def route(router: AffinityRouter, request: PendingRequest) -> str:
    """One routing round as Serve runs it: rank, take the first rank's shortest queue, send."""
    ranks = await router.choose_replicas(list(router.curr_replicas.values()), request)
    chosen = min(ranks[0], key=lambda r: router.replica_queue_len_cache.get(r.replica_id))
    router.on_send_request(chosen.replica_id)
    router.on_request_routed(request, chosen.replica_id, None)
    return chosen.replica_id.unique_id


async def test_the_affinity_router_sends_a_shared_prefix_back_to_its_replica():
    deployment = DeploymentID(name="llm-affine", app_name="app-affine")
    router, _ = affinity_router(deployment, 2)
    assert COUNTS.get("app-affine", "llm-affine") == 2  # it publishes the replica set too
    first = await route(router, pending("a", [1, 2, 3]))
    again = await route(router, pending("b", [1, 2, 3, 4]))
    assert again == first
    decision = ROUTED.pop("b")
    assert (decision.policy, decision.reason, decision.replica) == ("prefix_affinity", "prefix", first)
    assert (decision.matched_blocks, decision.prompt_blocks) == (3, 4)
    decided = REGISTRY.get_sample_value(
        "shardline_routing_decisions_total",
        {"model": "m", "policy": "prefix_affinity", "reason": "prefix", "replica": first},
    )
    assert decided == 1


async def test_the_affinity_router_spreads_a_hot_prefix_under_a_burst():
    deployment = DeploymentID(name="llm-hot", app_name="app-hot")
    router, both = affinity_router(deployment, 2)
    chosen = [await route(router, pending(f"hot-{i}", [7, 8, 9])) for i in range(30)]  # none finishes
    counts = sorted(chosen.count(r.replica_id.unique_id) for r in both)
    assert counts[0] >= 10 and counts[1] <= 20


async def test_the_affinity_router_forgets_a_dead_replica_and_its_sessions_move():
    deployment = DeploymentID(name="llm-session", app_name="app-session")
    router, both = affinity_router(deployment, 2, policy="session")
    owner = await route(router, pending("s1", [5], session="alice"))
    assert await route(router, pending("s2", [6], session="alice")) == owner  # the session, not the prefix
    dead = next(r for r in both if r.replica_id.unique_id == owner)
    router.on_replica_actor_died(dead.replica_id)
    router.update_replicas([r for r in both if r is not dead])
    assert await route(router, pending("s3", [5], session="alice")) != owner


def test_the_spec_selects_the_request_router_and_its_settings_cross_as_json():
    default = request_router_config(make_spec().models[0])
    assert default.request_router_class.endswith(".ReplicaSetRouter")
    model = make_spec(model={"routing": {"policy": "session", "load_guard": {"max_queue_gap": 2}}}).models[0]
    config = request_router_config(model)
    assert config.request_router_class.endswith(".AffinityRouter")
    assert json.loads(json.dumps(config.request_router_kwargs))["routing"]["load_guard"]["max_queue_gap"] == 2
    router = AffinityRouter(deployment_id=DeploymentID(name="x"), handle_source=DeploymentHandleSource.UNKNOWN)
    router.initialize_state(**config.request_router_kwargs)
    assert router._routing == model.routing
