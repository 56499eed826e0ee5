"""Replica choice per model, and Serve's live replica set, through Serve's request router.

Serve's own extension point, configured per deployment with `request_router_config`:
Serve keeps placement, health checks and restarts; the request router only ranks
the replicas for each call. Both routers here also publish the replica set's size.

Replica set: polling `serve.status()` gave a view up to one health period old, and
during a rolling update it said "no ready replica" while Serve itself could route
the call (issue 13). Serve pushes every change of the replica set a handle routes
to into `update_replicas`, and the router records the count (replica_counts.py), in
the process that makes the calls. Nothing is polled and the count is exactly the
set Serve would choose from.

Choice (`routing.policy` in the model's spec):
- `default`, `ReplicaSetRouter`: Serve's power of two choices, two random
  candidates (same node first), the one with the shorter queue that accepts the call.
- `least_loaded`, `prefix_affinity`, `session`, `AffinityRouter`: the ranking of
  policies/routing/affinity.py over Serve's queue lengths, the request's prompt
  blocks and session key (both on the `GenerationRequest`, the call's one argument,
  filled by the router's pipeline). It routes each request to the replica chosen
  for it (no FIFO hand-over to an older pending request, which would give one
  request's affine replica to another) and ignores locality: cache affinity is
  worth more than a same-node hop.
"""

from __future__ import annotations

import random
from collections import OrderedDict

from ray.serve.config import RequestRouterConfig
from ray.serve.request_router import FIFOMixin, LocalityMixin, PendingRequest, RequestRouter, RunningReplica

from shardline.generation import GenerationRequest
from shardline.policies.routing import affinity

# Modules, not their `COUNTS` / `ROUTED`: Serve pickles this module's classes by value,
# and a module reference unpickles as the process's own copy (the one the backend reads).
from shardline.serve import replica_counts, routed
from shardline.spec.deployment import ModelSpec
from shardline.spec.routing import RoutingSpec
from shardline.telemetry import metrics

FALLBACK = "fallback"
"""Reason label: the replica the policy chose had no room; Serve took the next rank."""
MAX_PENDING_DECISIONS = 10_000


class _PublishesReplicaSet:
    """Publishes the size of the replica set Serve pushes (replica_counts.py)."""

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        self._publish()

    def on_replica_actor_died(self, replica_id) -> None:
        """A call found the replica dead: it leaves the set now, before the controller says so."""
        super().on_replica_actor_died(replica_id)
        self._publish()

    def _publish(self) -> None:
        replica_counts.COUNTS.set(self._deployment_id.app_name, self._deployment_id.name, len(self._replicas))


class ReplicaSetRouter(_PublishesReplicaSet, FIFOMixin, LocalityMixin, RequestRouter):
    """Power of two choices that also publishes the replica set's size."""

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        ids = list(self.apply_locality_routing(pending_request=pending_request))
        if not ids:
            return []
        picked = random.sample(ids, min(2, len(ids)))
        return [[self._replicas[i] for i in picked]]

    def on_request_routed(self, pending_request: PendingRequest, replica_id, result) -> None:
        model = self._deployment_id.name.removeprefix("llm-")
        metrics.ROUTING_DECISIONS.labels(model, affinity.DEFAULT, affinity.DEFAULT, replica_id.unique_id).inc()


class AffinityRouter(_PublishesReplicaSet, LocalityMixin, RequestRouter):
    """`least_loaded`, `prefix_affinity` or `session` (policies/routing/affinity.py)."""

    def initialize_state(self, routing: dict | None = None, model: str = "") -> None:
        self._routing = RoutingSpec.model_validate(routing or {"policy": "least_loaded"})
        self._model = model or self._deployment_id.name
        self._index = affinity.PrefixIndex(self._routing.max_blocks_per_replica)
        self._sessions = affinity.SessionTable(self._routing.max_sessions)
        self._decisions: OrderedDict[str, affinity.Decision] = OrderedDict()

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        if pending_request is not None:
            pending_request.routing_context.should_backoff = True  # every replica was considered
        if not candidate_replicas:
            return []
        request = generation_request(pending_request)
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        decision = affinity.choose(
            self._routing,
            await self._loads(candidate_replicas),
            request.prefix_blocks if request else (),
            request.session if request else "",
            self._index,
            self._sessions,
        )
        if pending_request is not None:
            self._remember(pending_request.metadata.internal_request_id, decision)
        return [[by_id[i] for i in rank if i in by_id] for rank in decision.ranked]

    def on_request_routed(self, pending_request: PendingRequest, replica_id, result) -> None:
        """The replica accepted the call: remember what it was sent, and report the decision."""
        replica = replica_id.unique_id
        decision = self._decisions.pop(pending_request.metadata.internal_request_id, None)
        request = generation_request(pending_request)
        blocks = request.prefix_blocks if request else ()
        matched = self._index.matched(replica, blocks)
        reason = decision.reason if decision else affinity.LEAST_LOADED
        if decision and decision.replica != replica:
            reason = FALLBACK
        self._index.record(replica, blocks)
        if request and request.session:
            self._sessions.record(request.session, replica)
        policy = self._routing.policy
        metrics.ROUTING_DECISIONS.labels(self._model, policy, reason, replica).inc()
        metrics.ROUTING_MATCHED_BLOCKS.labels(self._model, policy).observe(matched)
        if blocks:
            metrics.ROUTING_PREDICTED_HIT.labels(self._model, policy).observe(matched / len(blocks))
        if request:
            routed.ROUTED.put(request.request_id, routed.Routed(policy, reason, replica, matched, len(blocks)))

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        self._index.keep({r.replica_id.unique_id for r in replicas})

    async def _loads(self, candidates: list[RunningReplica]) -> dict[str, int]:
        """Requests each replica holds: Serve's cached count, probed when missing or stale.
        A replica that does not answer the probe counts as full."""
        loads, unknown = {}, []
        for r in candidates:
            queue = self._replica_queue_len_cache.get(r.replica_id)
            if queue is None:
                unknown.append(r)
            else:
                loads[r.replica_id.unique_id] = queue
        if unknown:
            for r, queue in await self._probe_queue_lens(unknown, 0):
                loads[r.replica_id.unique_id] = r.max_ongoing_requests if queue is None else queue
        return loads

    def _remember(self, request_id: str, decision: affinity.Decision) -> None:
        self._decisions[request_id] = decision
        while len(self._decisions) > MAX_PENDING_DECISIONS:  # calls cancelled before they were routed
            self._decisions.popitem(last=False)


def generation_request(pending_request: PendingRequest | None) -> GenerationRequest | None:
    """The call's GenerationRequest (`LLMServer.generate`'s argument), if it is one."""
    if pending_request is None:
        return None
    return next((a for a in pending_request.args if isinstance(a, GenerationRequest)), None)


def request_router_config(model: ModelSpec | None = None) -> RequestRouterConfig:
    # By import path: a class object would be pickled by value, `COUNTS` (a lock) with it.
    if model is None or model.routing.policy == "default":
        return RequestRouterConfig(request_router_class=f"{__name__}.{ReplicaSetRouter.__name__}")
    return RequestRouterConfig(
        request_router_class=f"{__name__}.{AffinityRouter.__name__}",
        request_router_kwargs={"routing": model.routing.model_dump(mode="json"), "model": model.name},
    )
