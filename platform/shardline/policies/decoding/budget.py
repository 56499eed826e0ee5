"""Per-tenant spend: reservations, settlement, and pacing within a budget window.

A request reserves its worst-case cost before it runs and settles its actual cost
after; reservations count against the remaining budget, so concurrent requests
can never together spend past it. Pacing compares spend with the elapsed share
of the window: a tenant spending faster than its budget allows gets a `pace`
above 1, which the planner turns into fewer escalations to expensive tiers.
Time is passed in (no clock here), so the ledger is deterministic under test.
"""

from __future__ import annotations

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
    _open: dict[int, float] = field(default_factory=dict)
    _next: int = 0

    def remaining(self, now: float) -> float:
        self._roll(now)
        return max(0.0, self.budget - self.spent - self.reserved)

    def pace(self, now: float) -> float:
        """Spend share / elapsed window share (1.0 = on pace; >1 spending too fast)."""
        self._roll(now)
        elapsed = max((now - self.window_start) / self.window_s, 1e-3)
        return ((self.spent + self.reserved) / self.budget) / elapsed

    def reserve(self, amount: float, now: float) -> int:
        left = self.remaining(now)
        if amount > left:
            raise ResourceExhausted(
                f"tenant {self.tenant!r} has {left:.6g} credits left of {self.budget:.6g}; "
                f"this request may cost {amount:.6g}"
            )
        self._next += 1
        self._open[self._next] = amount
        self.reserved += amount
        return self._next

    def settle(self, reservation: int, actual: float) -> float:
        """Release a reservation and charge `actual` (at most what was reserved)."""
        held = self._open.pop(reservation)
        self.reserved -= held
        charged = min(actual, held)
        self.spent += charged
        return charged

    def _roll(self, now: float) -> None:
        if now - self.window_start >= self.window_s:
            periods = (now - self.window_start) // self.window_s
            self.window_start += periods * self.window_s
            self.spent = 0.0
