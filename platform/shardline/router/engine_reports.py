"""What each model's engine reports it runs, asked of a replica and kept for ListModels.

`ListModels` prints what the engines run (TP, PP, DP, EP, quantization, live workers,
experts per rank), not what the spec asked for: a setting lost on the way to vLLM
must show. Asking costs a call to a replica (`Backend.engine_info`), so the answer
is kept per model and asked again whenever the model's replica set changes (the
router's health loop calls `update`). A model without a ready replica, or whose
replica has not answered within `wait_s`, is unknown: the caller says so rather
than falling back on the spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from shardline.engine.protocol import EngineInfo
from shardline.router.backend import Backend

logger = logging.getLogger(__name__)

ASK_TIMEOUT_S = 30.0
"""One ask of a replica; past it the ask is abandoned and the next one starts over."""
LIST_WAIT_S = 2.0
"""How long a ListModels call waits for a model whose report is not in yet."""


class EngineReports:
    def __init__(self, backend: Backend, ask_timeout_s: float = ASK_TIMEOUT_S):
        self._backend = backend
        self._ask_timeout_s = ask_timeout_s
        self._reports: dict[str, EngineInfo] = {}
        self._ready: dict[str, int] = {}
        self._asks: dict[str, asyncio.Task] = {}

    def update(self, ready: dict[str, int]) -> None:
        """The router's latest view of ready replicas: a model whose count changed is
        asked again (its old report stays until the new one is in); one with no ready
        replica has no report."""
        for model, count in ready.items():
            if count == self._ready.get(model):
                continue
            self._ready[model] = count
            if count:
                self._ask(model, fresh=True)
            else:
                self._reports.pop(model, None)

    async def get(self, model: str, wait_s: float | None = None) -> EngineInfo | None:
        """The model's engine report; None (unknown) when no ready replica answered in
        `wait_s` (default LIST_WAIT_S)."""
        wait_s = LIST_WAIT_S if wait_s is None else wait_s
        if model in self._reports or not self._ready.get(model):
            return self._reports.get(model)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._ask(model)), wait_s)
        return self._reports.get(model)

    def close(self) -> None:
        for task in self._asks.values():
            task.cancel()

    def _ask(self, model: str, fresh: bool = False) -> asyncio.Task:
        """The ask in flight for `model`, or a new one (`fresh`: a running one may have
        reached a replica that has left since, so a new one starts after it)."""
        task = self._asks.get(model)
        if task is None or task.done() or fresh:
            task = asyncio.create_task(self._answer(model, task if fresh else None))
            self._asks[model] = task
        return task

    async def _answer(self, model: str, before: asyncio.Task | None) -> None:
        if before is not None and not before.done():
            await asyncio.wait([before])
        try:
            report = await asyncio.wait_for(self._backend.engine_info(model), self._ask_timeout_s)
        except Exception as exc:  # unknown until the next ask; ListModels says so
            logger.warning("no engine report from a replica of %r: %s", model, exc)
            return
        if self._ready.get(model):
            self._reports[model] = report
