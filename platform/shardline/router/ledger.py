"""The tenant ledger the router spends against: one seam, two places it can live.

`Ledgers` is the seam the pipeline and the auth guard await: a tenant's standing
(credit left and pace, one snapshot), reserve before a request runs, settle after,
and take one request from the tenant's rate-limit bucket. `Book` is the state
behind it: every tenant's budget window (`policies/decoding/budget.py`) and
rate-limit bucket (`security/auth.py`), plain synchronous code with a clock passed
in. Two implementations:

- `LocalLedgers` (here): the book in this process. Unit tests, `tests/router`, and a
  router run outside Ray use it; its spend lives and dies with the process.
- `SharedLedgers` (`serve/ledger.py`): the book in one detached Ray actor per
  deployment, checkpointed to the GCS key-value store. Every router replica in
  Serve spends from it, so a budget is the deployment's, not a replica's share,
  and it outlives router restarts and rolling updates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shardline.errors import InvalidArgument
from shardline.policies.decoding.budget import Ledger
from shardline.security.auth import RateLimiter
from shardline.spec.deployment import DeploymentSpec

STATE_VERSION = 1


@dataclass(frozen=True)
class Standing:
    remaining: float
    """Credits left this window, reservations deducted."""
    pace: float
    """Spend share / elapsed window share (>1: spending too fast)."""


@dataclass(frozen=True)
class Settled:
    charged: float
    """What the request was charged (at most what it reserved)."""
    remaining: float


class Ledgers(Protocol):
    async def standing(self, tenant: str) -> Standing: ...

    async def reserve(self, tenant: str, amount: float, lease_s: float) -> int:
        """Hold `amount` (ResourceExhausted when it does not fit); a reservation not
        settled within `lease_s` is charged in full."""

    async def settle(self, tenant: str, reservation: int, actual: float) -> Settled: ...

    async def take(self, tenant: str) -> float:
        """One request from the tenant's rate-limit bucket: 0 when allowed, else seconds to wait."""


@dataclass(frozen=True)
class Terms:
    """What the spec says a ledger holds: each tenant's budget and window, and the rate limit."""

    budgets: dict[str, tuple[float, float]]
    """tenant -> (budget, window_s)."""
    rate: float | None = None
    burst: int = 1

    @classmethod
    def of(cls, spec: DeploymentSpec) -> Terms:
        auth = spec.router.auth
        budgets = {t.name: (t.budget, t.window_s) for t in spec.policies.tenants}
        return cls(budgets, auth.requests_per_s, auth.burst) if auth else cls(budgets)

    def state(self) -> dict:
        return {"budgets": self.budgets, "rate": self.rate, "burst": self.burst}

    @classmethod
    def from_state(cls, state: dict) -> Terms:
        return cls({name: tuple(b) for name, b in state["budgets"].items()}, state["rate"], state["burst"])


class Book:
    """Every tenant's budget window and rate-limit bucket. Each method is one atomic
    step (no I/O inside), so whoever serializes the calls makes them atomic."""

    def __init__(self, terms: Terms, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._ledgers: dict[str, Ledger] = {}
        self.limiter: RateLimiter | None = None
        self.terms = Terms({})
        self.retune(terms)

    def retune(self, terms: Terms) -> None:
        """Take new terms (a rolling update changed the spec): spend is kept for tenants
        still there, budgets and windows follow the spec, new tenants start empty."""
        now = self._clock()
        ledgers = {}
        for name, (budget, window_s) in terms.budgets.items():
            ledger = self._ledgers.get(name) or Ledger(name, budget, window_s, window_start=now)
            ledger.budget, ledger.window_s = budget, window_s
            ledgers[name] = ledger
        self._ledgers, self.terms = ledgers, terms
        buckets = self.limiter.buckets if self.limiter else {}
        self.limiter = RateLimiter(terms.rate, terms.burst, self._clock, buckets) if terms.rate else None

    def standing(self, tenant: str) -> Standing:
        ledger, now = self._ledger(tenant), self._clock()
        return Standing(ledger.remaining(now), ledger.pace(now))

    def reserve(self, tenant: str, amount: float, lease_s: float = math.inf) -> int:
        return self._ledger(tenant).reserve(amount, self._clock(), lease_s)

    def settle(self, tenant: str, reservation: int, actual: float) -> Settled:
        ledger = self._ledger(tenant)
        charged = ledger.settle(reservation, actual)
        return Settled(charged, ledger.remaining(self._clock()))

    def take(self, tenant: str) -> float:
        return self.limiter.retry_after(tenant) if self.limiter else 0.0

    def state(self) -> dict:
        """Everything a restart must not forget (JSON-ready)."""
        return {
            "version": STATE_VERSION,
            "terms": self.terms.state(),
            "tenants": {name: ledger.state() for name, ledger in self._ledgers.items()},
            "buckets": {t: list(b) for t, b in self.limiter.buckets.items()} if self.limiter else {},
        }

    def restore(self, state: dict) -> None:
        """Take back a checkpoint: its terms (the newest a router gave), every tenant's
        spend and open reservations, and the rate-limit buckets."""
        self.retune(Terms.from_state(state["terms"]))
        for name, saved in state["tenants"].items():
            if name in self._ledgers:
                self._ledgers[name].restore(saved)
        if self.limiter:
            self.limiter.buckets.update({t: tuple(b) for t, b in state["buckets"].items()})

    def _ledger(self, tenant: str) -> Ledger:
        ledger = self._ledgers.get(tenant)
        if ledger is None:
            known = ", ".join(self._ledgers) or "none"
            raise InvalidArgument(f"tenant {tenant!r} has no budget in this ledger; tenants: {known}")
        return ledger


class LocalLedgers:
    """The book in this process (tests, a router outside Ray): calls complete at once."""

    def __init__(self, spec: DeploymentSpec, clock: Callable[[], float] = time.monotonic):
        self.book = Book(Terms.of(spec), clock)

    async def standing(self, tenant: str) -> Standing:
        return self.book.standing(tenant)

    async def reserve(self, tenant: str, amount: float, lease_s: float) -> int:
        return self.book.reserve(tenant, amount, lease_s)

    async def settle(self, tenant: str, reservation: int, actual: float) -> Settled:
        return self.book.settle(tenant, reservation, actual)

    async def take(self, tenant: str) -> float:
        return self.book.take(tenant)
