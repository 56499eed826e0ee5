"""Probes: what a drill reads from the server side while it runs.

`Counts` is the router's in-flight count plus its model's engine counts; a probe
is any async callable returning one. `serve_probe` reads them from a Serve
application (the router replica's `endpoint()` and the LLM replica's `stats()`);
tests over fake replicas pass a lambda over their objects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

POLL_S = 0.01


@dataclass(frozen=True)
class Counts:
    router_in_flight: int
    engine_unfinished: int
    engine_aborted: int

    @property
    def idle(self) -> bool:
        return self.router_in_flight == 0 and self.engine_unfinished == 0


Probe = Callable[[], Awaitable[Counts]]


def serve_probe(app: str, model: str) -> Probe:
    """Counts of a deployed app. Each call asks one router replica and one replica of
    `model` (Serve picks which): exact with one of each, as the tests deploy."""
    from ray import serve

    from shardline.serve.app import ROUTER_DEPLOYMENT
    from shardline.serve.deployment_handles import llm_deployment_name

    router = serve.get_deployment_handle(ROUTER_DEPLOYMENT, app_name=app)
    replica = serve.get_deployment_handle(llm_deployment_name(model), app_name=app)

    async def probe() -> Counts:
        endpoint, stats = await asyncio.gather(router.endpoint.remote(), replica.stats.remote())
        return Counts(endpoint["in_flight"], stats.unfinished_requests, stats.aborted_requests)

    return probe


async def until_idle(probe: Probe, since: float, timeout_s: float) -> tuple[float | None, Counts]:
    """Poll until router and engine are idle; returns the seconds from `since`
    (a `time.perf_counter()` value) to the first idle reading (None: not within
    `timeout_s`) and the last counts read."""
    deadline = time.perf_counter() + timeout_s
    while True:
        counts = await probe()
        now = time.perf_counter()
        if counts.idle:
            return max(now - since, 0.0), counts
        if now >= deadline:
            return None, counts
        await asyncio.sleep(POLL_S)
