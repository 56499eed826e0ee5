"""The router's readiness follows the replica set Serve pushes to its handles
(serve/replica_set.py), not a status poll."""

import asyncio
import threading
from dataclasses import dataclass

from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID

from shardline.serve import deployment_handles
from shardline.serve.replica_counts import COUNTS, ReplicaCounts
from shardline.serve.replica_set import ReplicaSetRouter


@dataclass
class FakeReplica:
    """What Serve's locality bookkeeping reads of a running replica."""

    replica_id: ReplicaID
    node_id: str = "node-a"
    availability_zone: str | None = None
    multiplexed_model_ids: frozenset = frozenset()


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
