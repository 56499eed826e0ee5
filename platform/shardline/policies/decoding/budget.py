"""Per-tenant spend: reservations, settlement, and pacing within a budget window.

A request reserves its worst-case cost before it runs and settles its actual cost
after; reservations count against the remaining budget, so concurrent requests
can never together spend past it. Pacing compares spend with the elapsed share
of the window: a tenant spending faster than its budget allows gets a `pace`
above 1, which the planner turns into fewer escalations to expensive tiers.
Time is passed in (no clock here), so the ledger is deterministic under test.

A reservation may carry a lease: one still open when its lease runs out (its
router died before settling) is charged in full, so a lost settle over-counts
spend and never under-counts it. A settle that arrives after that refunds the
difference, within the same window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from shardline.errors import ResourceExhausted


@dataclass(slots=True)
class Ledger:
    tenant: str
    budget: float
    window_s: float
    window_start: float = 0.0
    spent: float = 0.0
    reserved: float = 0.0
    _open: dict[int, tuple[float, float]] = field(default_factory=dict)
    """reservation -> (amount held, time its lease runs out)."""
    _lapsed: dict[int, float] = field(default_factory=dict)
    """Reservations charged in full when their lease ran out, this window: a late settle refunds."""
    _next: int = 0

    def remaining(self, now: float) -> float:
        self._roll(now)
        return max(0.0, self.budget - self.spent - self.reserved)

    def pace(self, now: float) -> float:
        """Spend share / elapsed window share (1.0 = on pace; >1 spending too fast)."""
        self._roll(now)
        elapsed = max((now - self.window_start) / self.window_s, 1e-3)
        return ((self.spent + self.reserved) / self.budget) / elapsed

    def reserve(self, amount: float, now: float, lease_s: float = math.inf) -> int:
        left = self.remaining(now)
        if amount > left:
            raise ResourceExhausted(
                f"tenant {self.tenant!r} has {left:.6g} credits left of {self.budget:.6g}; "
                f"this request may cost {amount:.6g}"
            )
        self._next += 1
        self._open[self._next] = (amount, now + lease_s)
        self.reserved += amount
        return self._next

    def settle(self, reservation: int, actual: float) -> float:
        """Release a reservation and charge `actual` (at most what was reserved); returns
        the charge. An unknown reservation (settled already, or lapsed in an earlier
        window) charges nothing more."""
        if reservation in self._lapsed:  # charged in full already: refund the rest
            held = self._lapsed.pop(reservation)
            charged = min(actual, held)
            self.spent -= held - charged
            return charged
        if reservation not in self._open:
            return 0.0
        held, _ = self._open.pop(reservation)
        self.reserved = self.reserved - held if self._open else 0.0  # no float residue when idle
        charged = min(actual, held)
        self.spent += charged
        return charged

    def _roll(self, now: float) -> None:
        if now - self.window_start >= self.window_s:
            periods = (now - self.window_start) // self.window_s
            self.window_start += periods * self.window_s
            self.spent = 0.0
            self._lapsed.clear()
        for reservation, (held, expires) in list(self._open.items()):
            if now >= expires:
                del self._open[reservation]
                self.reserved -= held
                self.spent += held
                self._lapsed[reservation] = held

    def state(self) -> dict:
        """What a checkpoint keeps (JSON-ready); `restore` reads it back."""
        return {
            "window_start": self.window_start,
            "spent": self.spent,
            "open": [[r, held, expires] for r, (held, expires) in self._open.items()],
            "lapsed": [[r, held] for r, held in self._lapsed.items()],
            "next": self._next,
        }

    def restore(self, state: dict) -> None:
        """Take back the spend of a checkpoint (budget and window come from the spec)."""
        self.window_start, self.spent, self._next = state["window_start"], state["spent"], state["next"]
        self._open = {int(r): (held, expires) for r, held, expires in state["open"]}
        self._lapsed = {int(r): held for r, held in state["lapsed"]}
        self.reserved = sum(held for held, _ in self._open.values())
