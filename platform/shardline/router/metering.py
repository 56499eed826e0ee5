"""What a request costs and whom it is charged to: tiers from the spec, tenants
resolved against `policies.tenants`, and the `Ledgers` that hold their budgets
(router/ledger.py). A budget is the deployment's: on Ray every router replica
spends from one shared ledger, so it is never divided among them.
"""

from __future__ import annotations

from shardline.errors import InvalidArgument
from shardline.policies.decoding.costs import Tier
from shardline.router.ledger import Ledgers, LocalLedgers
from shardline.spec.deployment import DeploymentSpec


class Metering:
    def __init__(self, spec: DeploymentSpec, ledgers: Ledgers | None = None):
        self._spec = spec
        self._tenants = {t.name for t in spec.policies.tenants}
        self.ledgers = ledgers or LocalLedgers(spec)
        """Where budgets and rate-limit buckets live; default: this process (tests)."""

    def tenant(self, tenant: str) -> str | None:
        """The tenant charged; None when the request is unmetered (no tenant at all,
        or no budgets configured: an authenticated tenant is then only an identity)."""
        name = tenant or self._spec.policies.default_tenant
        if not name or not self._tenants:
            return None
        if name not in self._tenants:
            known = ", ".join(t.name for t in self._spec.policies.tenants)
            raise InvalidArgument(f"tenant {name!r} is not configured; tenants: {known}")
        return name

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
