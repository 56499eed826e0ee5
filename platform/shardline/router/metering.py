"""Tenant budgets for one router replica: a `Ledger` per tenant from the spec.

Budgets are per router replica: with `router.replicas` > 1 each replica meters
its own share, so the spec's budget is divided among them (the deployment-wide
spend then never exceeds the budget either).
"""

from __future__ import annotations

import time

from shardline.errors import InvalidArgument
from shardline.policies.decoding.budget import Ledger
from shardline.policies.decoding.costs import Tier
from shardline.spec.deployment import DeploymentSpec


class Metering:
    def __init__(self, spec: DeploymentSpec, clock=time.monotonic):
        self._spec = spec
        self._clock = clock
        share = spec.router.replicas
        now = clock()
        self._ledgers = {
            t.name: Ledger(t.name, t.budget / share, t.window_s, window_start=now) for t in spec.policies.tenants
        }

    def now(self) -> float:
        return self._clock()

    def ledger(self, tenant: str) -> Ledger | None:
        """The tenant's ledger; None when the request is unmetered (no tenant at all,
        or no budgets configured: an authenticated tenant is then only an identity)."""
        name = tenant or self._spec.policies.default_tenant
        if not name or not self._ledgers:
            return None
        ledger = self._ledgers.get(name)
        if ledger is None:
            known = ", ".join(self._ledgers) or "none configured"
            raise InvalidArgument(f"tenant {name!r} is not configured; tenants: {known}")
        return ledger

    def tier(self, model: str) -> Tier:
        m = self._spec.model(model)
        cost, latency = (m.cost, m.latency) if m else (None, None)
        prices = (cost.input_per_1k, cost.output_per_1k) if cost else (0.0, 0.0)
        expected = (latency.ttft_ms, latency.prefill_ms_per_1k, latency.per_token_ms) if latency else (0.0, 0.0, 0.0)
        return Tier(model, *prices, *expected)

    def tiers(self, model: str) -> list[Tier]:
        """The tiers a request for `model` may use: a cascade's, or the model alone."""
        cascade = self._spec.policies.cascade(model)
        return [self.tier(t) for t in cascade.tiers] if cascade else [self.tier(model)]
