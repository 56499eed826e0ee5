"""Bearer-token authentication and per-tenant rate limits for every router RPC.

Tokens never live in the spec: `router.auth.tokens_file` names a file (a mounted
Kubernetes Secret, or a local file) of `tenant=token` lines. A request carries
`authorization: Bearer <token>`; the tenant it maps to is the caller's identity
for the rest of the request (`current_tenant()`).

Both doors admit a caller through one `Guard`: the gRPC door in its interceptor
(router/grpc/interceptors.py), the HTTP door in its middleware.
"""

from __future__ import annotations

import contextvars
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shardline import wire
from shardline.errors import PermissionDenied, ResourceExhausted, SpecError, Unauthenticated

MIN_TOKEN_CHARS = 16
_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("shardline_tenant", default=None)


def current_tenant() -> str | None:
    """The authenticated tenant of the RPC being served (None when auth is off)."""
    return _tenant.get()


def load_tokens(path: str) -> dict[str, str]:
    """`tenant=token` lines (blank lines and `#` comments skipped) → {tenant: token}.
    Errors name the file and line, never the token."""
    tokens: dict[str, str] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise SpecError(f"router.auth.tokens_file {path!r}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tenant, sep, token = (part.strip() for part in line.partition("="))
        where = f"{path}:{number}"
        if not sep or not tenant:
            raise SpecError(f"{where}: expected `tenant=token`")
        if len(token) < MIN_TOKEN_CHARS:
            raise SpecError(
                f"{where}: token for {tenant!r} has {len(token)} characters; the minimum is {MIN_TOKEN_CHARS}"
            )
        if tenant in tokens:
            raise SpecError(f"{where}: tenant {tenant!r} appears twice")
        tokens[tenant] = token
    if not tokens:
        raise SpecError(f"router.auth.tokens_file {path!r} holds no `tenant=token` line")
    return tokens


class Authenticator:
    def __init__(self, tokens: dict[str, str]):
        self._tokens = [(tenant, token.encode()) for tenant, token in tokens.items()]

    def tenant(self, metadata) -> str | None:
        """The tenant whose token `metadata` carries, else None. Compares against
        every token in constant time, so timing reveals neither tenant nor prefix."""
        # surrogatepass: an HTTP header that is not UTF-8 arrives with surrogates; it
        # must compare unequal, not raise.
        presented = _bearer(metadata).encode("utf-8", "surrogatepass")
        match = None
        for tenant, token in self._tokens:
            if hmac.compare_digest(presented, token):
                match = tenant
        return match


def _bearer(metadata) -> str:
    for key, value in metadata or ():
        if key == wire.AUTHORIZATION and isinstance(value, str) and value.startswith(wire.BEARER):
            return value[len(wire.BEARER) :]
    return ""


@dataclass
class RateLimiter:
    """One token bucket per tenant: `rate` requests/s sustained, `burst` at once."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    async def take(self, tenant: str) -> float:
        """`retry_after`, as the `Limiter` the guard awaits."""
        return self.retry_after(tenant)

    def retry_after(self, tenant: str) -> float:
        """Takes one request from the tenant's bucket: 0 when allowed, else seconds to wait."""
        now = self.clock()
        level, last = self.buckets.get(tenant, (float(self.burst), now))
        level = min(float(self.burst), level + (now - last) * self.rate)
        if level >= 1:
            self.buckets[tenant] = (level - 1, now)
            return 0.0
        self.buckets[tenant] = (level, now)
        return (1 - level) / self.rate


class Limiter(Protocol):
    """Where the rate-limit buckets live: a `RateLimiter` in this process, or the
    deployment's shared ledger (router/ledger.py)."""

    async def take(self, tenant: str) -> float:
        """One request from the tenant's bucket: 0 when allowed, else seconds to wait."""


@dataclass
class Guard:
    """Who is calling and whether they may: shared by the gRPC and HTTP doors, so
    both use one set of tokens and one rate-limit bucket per tenant."""

    authenticator: Authenticator
    limiter: RateLimiter | None
    """The configured limit (None: unlimited); its own buckets unless `buckets` is given."""
    buckets: Limiter | None = None
    """Where the buckets live when not in `limiter` (the router's ledger)."""

    async def admit(self, metadata) -> str:
        """The caller's tenant, made current for this task; typed errors otherwise."""
        tenant = self.authenticator.tenant(metadata)
        if tenant is None:
            raise Unauthenticated("missing or unknown bearer token: send `authorization: Bearer <token>`")
        wait = await (self.buckets or self.limiter).take(tenant) if self.limiter else 0.0
        if wait:
            raise ResourceExhausted(
                f"tenant {tenant!r} is over its rate limit of {self.limiter.rate:g} requests/s "
                f"(burst {self.limiter.burst}); retry in {wait:.2f} s"
            )
        _tenant.set(tenant)
        return tenant


def resolve_tenant(claimed: str, fallback: str = "") -> str:
    """The authenticated tenant when the router requires auth (a request may not
    claim another); otherwise the claimed one, else `fallback`."""
    authenticated = current_tenant()
    if authenticated is None:
        return claimed or fallback
    if claimed and claimed != authenticated:
        raise PermissionDenied(f"request names tenant {claimed!r} but its token belongs to {authenticated!r}")
    return authenticated


def router_guard(router, buckets: Limiter | None = None) -> Guard | None:
    """The guard a `RouterSpec` asks for (None without `auth`); reads the tokens file.
    `buckets`: where the rate-limit buckets live (default: in this guard)."""
    if router.auth is None:
        return None
    auth = router.auth
    limiter = RateLimiter(auth.requests_per_s, auth.burst) if auth.requests_per_s else None
    return Guard(Authenticator(load_tokens(auth.tokens_file)), limiter, buckets)
