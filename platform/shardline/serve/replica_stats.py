"""Each replica's own report of what its engine did, asked of every replica of a model.

A deployment handle routes a call to one replica of its choosing; a bench or a test
that checks where requests went must ask each replica. Serve names every replica
actor (`SERVE_REPLICA::<app>#<deployment>#<replica id>`) and calls a replica's
`record_routing_stats` (LLMServer: its engine's EngineStats) on any of them.
"""

from __future__ import annotations

import ray

from shardline.serve.deployment_handles import llm_deployment_name

SERVE_NAMESPACE = "serve"
REPLICA_PREFIX = "SERVE_REPLICA::"


def replica_stats(app: str, model: str, timeout_s: float = 30.0) -> dict[str, dict[str, int]]:
    """Replica id -> its engine stats (requests started, prefix-cache queries and hits in
    tokens), for every live replica of `model` in `app`."""
    prefix = f"{REPLICA_PREFIX}{app}#{llm_deployment_name(model)}#"
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]
    actors = {name.removeprefix(prefix): ray.get_actor(name, namespace=SERVE_NAMESPACE) for name in names}
    stats = ray.get([actor.record_routing_stats.remote() for actor in actors.values()], timeout=timeout_s)
    return dict(zip(actors, stats, strict=True))
