"""Serve's live replica set per deployment, as this process's handles see it.

The router must know which models have a replica that can take a call. Polling
`serve.status()` gave a view up to one health period old, and during a rolling
update (old replicas stopping, new ones not yet counted) it said "no ready replica"
while Serve itself could route the call (issue 13). So the engine deployments use
`ReplicaSetRouter`, a Serve request router (Serve's own extension point, configured
per deployment with `request_router_config`): Serve pushes every change of the
replica set a handle routes to into `update_replicas`, and the router records the
count (replica_counts.py), in the process that makes the calls. Nothing is polled and the count
is exactly the set Serve would choose from.

Replica choice itself is Serve's usual power of two choices: two random candidates
(same node first), the one with the shorter queue that accepts the call.
"""

from __future__ import annotations

import random

from ray.serve.config import RequestRouterConfig
from ray.serve.request_router import FIFOMixin, LocalityMixin, PendingRequest, RequestRouter, RunningReplica

# A module, not its `COUNTS`: Serve pickles this module's classes by value, and a
# module reference unpickles as the process's own copy (the one the backend reads).
from shardline.serve import replica_counts


class ReplicaSetRouter(FIFOMixin, LocalityMixin, RequestRouter):
    """Power of two choices that also publishes the replica set's size (replica_counts.py)."""

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        ids = list(self.apply_locality_routing(pending_request=pending_request))
        if not ids:
            return []
        picked = random.sample(ids, min(2, len(ids)))
        return [[self._replicas[i] for i in picked]]

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        self._publish()

    def on_replica_actor_died(self, replica_id) -> None:
        """A call found the replica dead: it leaves the set now, before the controller says so."""
        super().on_replica_actor_died(replica_id)
        self._publish()

    def _publish(self) -> None:
        replica_counts.COUNTS.set(self._deployment_id.app_name, self._deployment_id.name, len(self._replicas))


def request_router_config() -> RequestRouterConfig:
    # By import path: a class object would be pickled by value, `COUNTS` (a lock) with it.
    return RequestRouterConfig(request_router_class=f"{__name__}.{ReplicaSetRouter.__name__}")
