"""Outcome accounting: drive many concurrent streams at a router, give each request
exactly one verdict, and count them.

    OK                  finished, stream intact, no replica failed under it
    OK_AFTER_RETRY      finished intact after the router retried or resumed it
    REJECTED_RETRYABLE  UNAVAILABLE / RESOURCE_EXHAUSTED before any token (safe to retry)
    FAILED_TYPED        any other specific status, with the tokens already received
    CANCELLED           the harness itself cancelled it (cancel storms)
    LOST                no terminal status by the deadline + `LOST_GRACE_S`
    CORRUPT             a gap, repeat or reorder in the stream, or a count that disagrees

LOST and CORRUPT must be 0 in every fault test (issue #7). A stream is checked
against itself (token count = the final usage, the `shardline-tokens-sent`
trailer = what arrived, one final chunk, last) and, when the caller passes a
reference (token ids of a fault-free run of the same greedy request), against that.
The fault tests and `bench/faults.py` share this module.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from shardline.v1 import inference_pb2 as pb
from shardline.v1 import inference_pb2_grpc as pb_grpc
from shardline.wire import TOKENS_SENT_TRAILER

LOST_GRACE_S = 1.0
RETRYABLE = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
UNTYPED = ("UNKNOWN", "INTERNAL")


class Verdict(enum.StrEnum):
    OK = "OK"
    OK_AFTER_RETRY = "OK_AFTER_RETRY"
    REJECTED_RETRYABLE = "REJECTED_RETRYABLE"
    FAILED_TYPED = "FAILED_TYPED"
    CANCELLED = "CANCELLED"
    LOST = "LOST"
    CORRUPT = "CORRUPT"


@dataclass
class Record:
    """One request's end, as the client saw it."""

    request_id: str
    verdict: Verdict
    code: str = "OK"
    """The gRPC status name."""
    message: str = ""
    tokens: int = 0
    """Tokens received."""
    retries: int = 0
    resumed_tokens: int = 0
    start_s: float = 0.0
    """When the call started, seconds after the run began."""
    ttft_s: float | None = None
    e2e_s: float = 0.0
    problem: str = ""
    """Why a stream is CORRUPT."""
    charged: float = 0.0
    """What the router said it charged the tenant (the final chunk's report); 0 without one."""
    token_ids: list[int] = field(default_factory=list, repr=False)
    """What arrived (a fault-free run's become the reference for a faulty one)."""


@dataclass
class Plan:
    """What to send and what to do to it."""

    requests: Sequence[pb.GenerateRequest]
    concurrency: int = 16
    deadline_s: float | None = None
    """Sent as the gRPC deadline; None leaves the router's default cap in charge."""
    lost_after_s: float = 120.0
    """Without a deadline: a call with no terminal status by then is LOST."""
    cancel_after: dict[str, int] = field(default_factory=dict)
    """request_id -> cancel once this many tokens have arrived."""
    reference: dict[str, list[int]] = field(default_factory=dict)
    """request_id -> the full token ids of a fault-free run (greedy requests)."""
    metadata: tuple[tuple[str, str], ...] = ()


async def drive(
    channel: grpc.aio.Channel, plan: Plan, on_token: Callable[[Record], None] | None = None
) -> list[Record]:
    """Run every request of `plan` (at most `concurrency` at once); one record each.
    `on_token` sees a request's record after each chunk (fault injection hooks)."""
    stub = pb_grpc.InferenceStub(channel)
    slots = asyncio.Semaphore(plan.concurrency)
    began = time.perf_counter()

    async def one(request: pb.GenerateRequest) -> Record:
        async with slots:
            return await _stream(stub, request, plan, began, on_token)

    return list(await asyncio.gather(*(one(r) for r in plan.requests)))


async def _stream(
    stub, request: pb.GenerateRequest, plan: Plan, began: float, on_token: Callable[[Record], None] | None
) -> Record:
    rid = request.request_id
    start = time.perf_counter()
    record = Record(rid, Verdict.OK, start_s=start - began)
    ids = record.token_ids
    final: pb.GenerateChunk | None = None
    problems: list[str] = []
    call = stub.GenerateStream(request, timeout=plan.deadline_s, metadata=plan.metadata or None)
    limit = (plan.deadline_s if plan.deadline_s is not None else plan.lost_after_s) + LOST_GRACE_S
    try:
        async with asyncio.timeout(limit):
            try:
                async for chunk in call:
                    if final is not None:
                        problems.append("a chunk after the final one")
                    if chunk.request_id != rid:
                        problems.append(f"chunk for request {chunk.request_id!r}")
                    if record.ttft_s is None and chunk.token_ids:
                        record.ttft_s = time.perf_counter() - start
                    ids.extend(chunk.token_ids)
                    record.tokens = len(ids)
                    if chunk.finish_reason:
                        final = chunk
                    if on_token:
                        on_token(record)
                    if rid in plan.cancel_after and len(ids) >= plan.cancel_after[rid] and final is None:
                        call.cancel()
                        record.verdict, record.code = Verdict.CANCELLED, "CANCELLED"
                        break
            except grpc.aio.AioRpcError as exc:
                record.code, record.message = exc.code().name, exc.details() or ""
                sent = _trailer(exc.trailing_metadata() or ())
                if sent is not None and sent != len(ids):
                    problems.append(f"trailer says {sent} tokens sent; {len(ids)} arrived")
    except TimeoutError:
        call.cancel()
        record.verdict, record.code = Verdict.LOST, "NONE"
    record.e2e_s = time.perf_counter() - start
    if record.verdict is Verdict.OK:
        _judge(record, final, ids, plan.reference.get(rid), problems)
    elif record.verdict is Verdict.CANCELLED:
        _check_prefix(ids, plan.reference.get(rid), problems)
    if problems:
        record.verdict, record.problem = Verdict.CORRUPT, "; ".join(problems)
    return record


def _judge(
    record: Record, final: pb.GenerateChunk | None, ids: list[int], reference: list[int] | None, problems: list[str]
) -> None:
    if record.code != "OK":
        record.verdict = Verdict.REJECTED_RETRYABLE if record.code in RETRYABLE and not ids else Verdict.FAILED_TYPED
        _check_prefix(ids, reference, problems)
        return
    if final is None:
        problems.append("the stream ended without a final chunk")
        return
    if final.usage.completion_tokens != len(ids):
        problems.append(f"usage says {final.usage.completion_tokens} tokens; {len(ids)} arrived")
    if reference is not None and ids != reference:
        problems.append(f"tokens differ from the reference at index {_first_difference(ids, reference)}")
    record.charged = final.report.decoding.cost_charged
    recovery = final.report.recovery
    record.retries, record.resumed_tokens = recovery.retries, recovery.resumed_tokens
    record.verdict = Verdict.OK_AFTER_RETRY if recovery.retries else Verdict.OK


def _check_prefix(ids: list[int], reference: list[int] | None, problems: list[str]) -> None:
    if reference is not None and ids != reference[: len(ids)]:
        problems.append(f"tokens differ from the reference at index {_first_difference(ids, reference)}")


def _first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _trailer(metadata) -> int | None:
    for key, value in metadata:
        if key == TOKENS_SENT_TRAILER:
            return int(value)
    return None


def tally(records: Sequence[Record]) -> dict:
    """Counts per verdict and status code, and latency percentiles (seconds)."""
    verdicts = Counter(r.verdict.value for r in records)
    ttft = [r.ttft_s for r in records if r.ttft_s is not None and r.verdict in (Verdict.OK, Verdict.OK_AFTER_RETRY)]
    e2e = [r.e2e_s for r in records if r.verdict in (Verdict.OK, Verdict.OK_AFTER_RETRY)]
    rejected = [r.e2e_s for r in records if r.verdict is Verdict.REJECTED_RETRYABLE]
    return {
        "requests": len(records),
        "verdicts": {v.value: verdicts.get(v.value, 0) for v in Verdict},
        "codes": dict(Counter(r.code for r in records)),
        "untyped": sum(r.code in UNTYPED for r in records),
        "tokens_received": sum(r.tokens for r in records),
        "resumed_mid_stream": sum(r.resumed_tokens > 0 for r in records),
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
        "e2e_p50_s": percentile(e2e, 50),
        "e2e_p99_s": percentile(e2e, 99),
        "reject_p99_s": percentile(rejected, 99),
        "corrupt": [f"{r.request_id}: {r.problem}" for r in records if r.verdict is Verdict.CORRUPT][:10],
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def table(rows: dict[str, dict]) -> str:
    """One line per scenario: verdict counts and latency figures."""
    names = [v.value for v in Verdict]
    header = ["scenario", *names, "untyped", "ttft p50 ms", "ttft p99 ms", "e2e p99 ms"]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for scenario, t in rows.items():
        cells = [
            scenario,
            *(str(t["verdicts"][n]) for n in names),
            str(t["untyped"]),
            _ms(t["ttft_p50_s"]),
            _ms(t["ttft_p99_s"]),
            _ms(t["e2e_p99_s"]),
        ]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"
