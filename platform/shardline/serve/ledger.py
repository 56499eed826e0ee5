"""The deployment's one tenant ledger: a detached Ray actor every router replica spends from.

`LedgerActor` holds the `Book` (router/ledger.py: every tenant's budget window and
rate-limit bucket). It is an async actor: all its calls run on one thread, one
event loop, and every method changes the book in one synchronous step before its
first `await`, so a reserve's check of the credit left and its hold are one step
that no other router's call can enter. That is the whole of its atomicity.

Named `shardline-ledger-<spec.name>` in Serve's namespace (`serve`: a replica's own
namespace is that of the driver that deployed it, anonymous for `shardline up`, so
a redeploy from another process would not find it there), detached (it outlives the
router replica that started it, through rolling updates; `shardline down` stops it and
keeps its checkpoint, so spend survives a redeploy) and restarted by Ray when it dies
(`max_restarts=-1`).

Checkpoint: the book as JSON under `ledger/<spec.name>` in the GCS key-value store
(as Serve's controller keeps its own state), written after every reserve and
settle and before the call returns; calls that change the book while a write is
in flight share the next write (group commit: one write at a time, each covering
every change made before it began). So a router never acts on a reservation or a
charge that a crash can lose: after a restart the actor reads the checkpoint back
with every spend and every open reservation (which counts until settled, or until
its lease runs out and it is charged in full). Rate-limit buckets ride along with
the next budget write and are not written on their own: a crash may hand a tenant
back up to its `burst` early. With KubeRay, GCS (and with it this checkpoint)
survives a head-node restart only when GCS fault tolerance is on (external Redis).

`SharedLedgers` is the router side: the `Ledgers` protocol over the actor's handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import ray
from ray._raylet import GcsClient  # the client Serve's own KV store uses
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.serve._private.constants import SERVE_NAMESPACE

from shardline.errors import RequestError, Unavailable
from shardline.router.ledger import Book, Settled, Standing, Terms
from shardline.spec.deployment import DeploymentSpec

logger = logging.getLogger(__name__)

ACTOR_PREFIX = "shardline-ledger-"
KV_NAMESPACE = b"shardline"
KV_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 10.0
"""A ledger call slower than this fails the request UNAVAILABLE (retryable)."""
SETTLE_RETRY_S = 20.0
"""How long a settle keeps retrying across a ledger restart (within LEASE_MARGIN_S)."""
RETRY_PAUSE_S = 0.2


def actor_name(app: str) -> str:
    return ACTOR_PREFIX + app


def checkpoint_key(app: str) -> bytes:
    return f"ledger/{app}".encode()


class GcsCheckpoint:
    """One key in the GCS key-value store."""

    def __init__(self, app: str):
        self._key = checkpoint_key(app)
        self._gcs = GcsClient(address=ray.get_runtime_context().gcs_address)

    def load(self) -> bytes | None:
        return self._gcs.internal_kv_get(self._key, KV_NAMESPACE, timeout=KV_TIMEOUT_S)

    async def save(self, value: bytes) -> None:
        await self._gcs.async_internal_kv_put(self._key, value, True, KV_NAMESPACE, timeout=KV_TIMEOUT_S)


class LedgerActor:
    """The book and its checkpoint. Runs as a Ray actor (`ledger_actor`); tests call
    it directly with a `checkpoint` of their own and a `clock`."""

    def __init__(self, app: str, terms: Terms, checkpoint=None, clock=time.time):
        self._checkpoint = checkpoint or GcsCheckpoint(app)
        self._book = Book(terms, clock)  # wall clock: a restart may land on another node
        self._changes = self._saved = 0  # changes made / covered by the stored checkpoint
        self._writing = asyncio.Lock()
        saved = self._checkpoint.load()
        if saved:
            self._book.restore(json.loads(saved))
            logger.info("ledger %s: restored from its checkpoint", app)

    async def retune(self, terms: Terms) -> None:
        """A router with (maybe) newer terms connected: budgets follow its spec."""
        if terms != self._book.terms:
            self._book.retune(terms)
            await self._stored()

    async def standing(self, tenant: str) -> Standing:
        return self._book.standing(tenant)

    async def reserve(self, tenant: str, amount: float, lease_s: float) -> int:
        reservation = self._book.reserve(tenant, amount, lease_s)
        await self._stored()
        return reservation

    async def settle(self, tenant: str, reservation: int, actual: float) -> Settled:
        settled = self._book.settle(tenant, reservation, actual)
        await self._stored()
        return settled

    async def take(self, tenant: str) -> float:
        return self._book.take(tenant)

    async def state(self) -> dict:
        return self._book.state()

    async def _stored(self) -> None:
        """Returns once a checkpoint taken after the caller's change is stored."""
        self._changes += 1
        mine = self._changes
        async with self._writing:
            if self._saved >= mine:  # a write that began after this change covered it
                return
            covers, value = self._changes, json.dumps(self._book.state()).encode()
            await self._checkpoint.save(value)
            self._saved = covers


def ledger_actor(spec: DeploymentSpec, namespace: str | None = None):
    """The deployment's ledger actor: the running one, else a new one (get_if_exists
    makes concurrent first calls from several router replicas agree on one)."""
    return (
        ray.remote(LedgerActor)
        .options(
            name=actor_name(spec.name),
            namespace=namespace or SERVE_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            num_cpus=0,  # one small process; it must not take a CPU the engines are sized for
        )
        .remote(spec.name, Terms.of(spec))
    )


def stop_ledger_actor(app: str) -> None:
    """Stop the deployment's ledger actor, if one runs; its checkpoint stays, so the
    next router to connect starts it again with every spend. For a first deploy that
    failed: nothing of it may be left running."""
    with contextlib.suppress(ValueError):  # ValueError: none runs
        ray.kill(ray.get_actor(actor_name(app), namespace=SERVE_NAMESPACE), no_restart=True)


class SharedLedgers:
    """`Ledgers` over the deployment's ledger actor. Reads and reserves fail UNAVAILABLE
    (retryable) when the actor cannot be reached; a settle retries across a restart
    for SETTLE_RETRY_S (a settle is safe to repeat: a second one finds nothing open)."""

    def __init__(self, actor):
        self.actor = actor

    @classmethod
    async def connect(cls, spec: DeploymentSpec, namespace: str | None = None) -> SharedLedgers:
        ledgers = cls(ledger_actor(spec, namespace))
        await ledgers._call("retune", Terms.of(spec))
        return ledgers

    async def standing(self, tenant: str) -> Standing:
        return await self._call("standing", tenant)

    async def reserve(self, tenant: str, amount: float, lease_s: float) -> int:
        return await self._call("reserve", tenant, amount, lease_s)

    async def settle(self, tenant: str, reservation: int, actual: float) -> Settled:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + SETTLE_RETRY_S
        while True:
            try:
                return await self._call("settle", tenant, reservation, actual)
            except Unavailable:
                if loop.time() >= give_up:
                    raise
                await asyncio.sleep(RETRY_PAUSE_S)

    async def take(self, tenant: str) -> float:
        return await self._call("take", tenant)

    async def _call(self, method: str, *args):
        try:
            return await asyncio.wait_for(getattr(self.actor, method).remote(*args), CALL_TIMEOUT_S)
        except RayTaskError as exc:
            if isinstance(exc.cause, RequestError):  # ResourceExhausted, InvalidArgument: as raised
                raise exc.cause from None
            raise
        except (RayActorError, GetTimeoutError, TimeoutError) as exc:
            raise Unavailable(f"the tenant ledger is unreachable ({type(exc).__name__}); retry") from None
