"""Bearer-token authentication and per-tenant rate limits for every router RPC.

Tokens never live in the spec: `router.auth.tokens_file` names a file (a mounted
Kubernetes Secret, or a local file) of `tenant=token` lines. A request carries
`authorization: Bearer <token>`; the tenant it maps to is the caller's identity
for the rest of the request (`current_tenant()`).

The check wraps each method's handler rather than answering from the interceptor
itself, so the wrapped handler runs in the RPC's own task: the tenant set there
is visible to the servicer, and the abort is an ordinary typed status.
"""

from __future__ import annotations

import contextvars
import hmac
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from shardline.errors import SpecError

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
            raise SpecError(f"{where}: token for {tenant!r} has {len(token)} characters; the minimum is {MIN_TOKEN_CHARS}")
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
        presented = _bearer(metadata).encode()
        match = None
        for tenant, token in self._tokens:
            if hmac.compare_digest(presented, token):
                match = tenant
        return match


def _bearer(metadata) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):]
    return ""


@dataclass
class RateLimiter:
    """One token bucket per tenant: `rate` requests/s sustained, `burst` at once."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def retry_after(self, tenant: str) -> float:
        """Takes one request from the tenant's bucket: 0 when allowed, else seconds to wait."""
        now = self.clock()
        level, last = self._buckets.get(tenant, (float(self.burst), now))
        level = min(float(self.burst), level + (now - last) * self.rate)
        if level >= 1:
            self._buckets[tenant] = (level - 1, now)
            return 0.0
        self._buckets[tenant] = (level, now)
        return (1 - level) / self.rate


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator, limiter: RateLimiter | None, exempt_services: set[str]):
        self._auth = authenticator
        self._limiter = limiter
        self._exempt = exempt_services

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        service = details.method.split("/")[1] if details.method.count("/") == 2 else ""
        if handler is None or service in self._exempt:
            return handler
        return _guarded(handler, self._admit)

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        tenant = self._auth.tenant(context.invocation_metadata())
        if tenant is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or unknown bearer token: send metadata `authorization: Bearer <token>`",
            )
        wait = self._limiter.retry_after(tenant) if self._limiter else 0.0
        if wait:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"tenant {tenant!r} is over its rate limit of {self._limiter.rate:g} requests/s "
                f"(burst {self._limiter.burst}); retry in {wait:.2f} s",
            )
        _tenant.set(tenant)


def _guarded(handler: grpc.RpcMethodHandler, admit) -> grpc.RpcMethodHandler:
    """The same handler with `admit(context)` run first, for all four call shapes."""
    kind = ("stream" if handler.request_streaming else "unary") + "_" + ("stream" if handler.response_streaming else "unary")
    behavior = getattr(handler, kind)

    # grpc.aio accepts streaming handlers written as async generators or as
    # coroutines that call context.write (health's Watch): keep the original shape.
    if inspect.isasyncgenfunction(behavior):
        async def wrapped(request, context):
            await admit(context)
            async for item in behavior(request, context):
                yield item
    else:
        async def wrapped(request, context):
            await admit(context)
            return await behavior(request, context)

    factory = getattr(grpc, f"{kind}_rpc_method_handler")
    return factory(wrapped, request_deserializer=handler.request_deserializer,
                   response_serializer=handler.response_serializer)


def router_interceptors(router) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors a `RouterSpec` asks for (none without `auth`)."""
    if router.auth is None:
        return []
    auth = router.auth
    limiter = RateLimiter(auth.requests_per_s, auth.burst) if auth.requests_per_s else None
    return [AuthInterceptor(Authenticator(load_tokens(auth.tokens_file)), limiter, exempt_services(auth.exempt))]


def exempt_services(names) -> set[str]:
    full = {"health": health.SERVICE_NAME, "reflection": reflection.SERVICE_NAME}
    return {full[name] for name in names}
