"""What the router needs from the replicas behind it.

`serve/deployment_handles.py` implements it over Ray Serve DeploymentHandles; unit tests use
a fake engine behind the same protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from shardline.engine.protocol import EngineInfo
from shardline.generation import GenerationDelta, GenerationRequest


class Backend(Protocol):
    def stream(self, model: str, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Deltas from one replica of `model`; closing the iterator cancels the request."""
        ...

    async def ready_replicas(self) -> dict[str, int]:
        """Ready (health-checked) replicas per model name: the set a call can be routed to."""
        ...

    async def replicas_changed(self, timeout_s: float) -> None:
        """Returns when the replica set may have changed, or after `timeout_s`."""
        ...

    async def engine_info(self, model: str) -> EngineInfo:
        """What one ready replica's engine of `model` reports it runs (`Engine.info`)."""
        ...
