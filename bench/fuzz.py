"""Long fuzz run of the router's gRPC door: many hypothesis-drawn Generate calls.

The strategies of tests/router/test_router_fuzz.py (tests/fuzzing.py: every field,
mutated wire bytes, metadata with non-UTF-8 binary values and values over the
limit, good and bad tokens), against the real grpc.aio router (auth on) over a
fake engine, in this process. Prints the statuses seen with counts per kind of
call, the UNKNOWN/INTERNAL count and the crashes (a client-side exception other
than a status, an OK without a finish reason, a router that stops answering):
all must be 0 (exit status 1 otherwise). Writes bench/results/fuzz.json.

    .venv/bin/python bench/fuzz.py --examples 10000     # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
from hypothesis import HealthCheck, Phase, given, seed, settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the strategies and the fake engine live with the tests

from fuzzing import MODEL, TOKEN, TYPED, Case, cases, fuzz_spec, send, threaded_router, write_tokens  # noqa: E402
from shardline.v1 import inference_pb2 as pb  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SAMPLES_KEPT = 5


class Tally:
    def __init__(self):
        self.statuses: collections.Counter[tuple[str, str]] = collections.Counter()
        self.untyped: list[dict] = []
        self.crashes: list[dict] = []
        self.latencies: list[float] = []

    def record(self, case: Case, channel: grpc.Channel) -> None:
        kind = ("wire bytes" if isinstance(case.body, bytes) else "request") + (" stream" if case.streaming else "")
        start = time.perf_counter()
        try:
            code, details = send(channel, case)
        except Exception as exc:  # noqa: BLE001 - a crash is what we count, not what stops us
            self.crashes.append({"kind": kind, "error": f"{type(exc).__name__}: {exc}"[:300], "case": _short(case)})
            return
        finally:
            self.latencies.append(time.perf_counter() - start)
        self.statuses[(code.name, kind)] += 1
        if code not in TYPED or (code != grpc.StatusCode.OK and not details):
            self.untyped.append({"status": code.name, "details": details[:300], "case": _short(case)})


def _short(case: Case) -> str:
    return repr(case)[:500]


def run(examples: int, seed_value: int, channel: grpc.Channel) -> Tally:
    tally = Tally()

    @seed(seed_value)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def one(case: Case) -> None:
        tally.record(case, channel)

    one()
    return tally


def still_serves(channel: grpc.Channel) -> bool:
    ok = Case(pb.GenerateRequest(model=MODEL, prompt="a b c"), (("authorization", f"Bearer {TOKEN}"),))
    return send(channel, ok) == (grpc.StatusCode.OK, "")


def report(tally: Tally, seconds: float, serving: bool) -> dict:
    calls = sum(tally.statuses.values()) + len(tally.crashes)
    kinds = sorted({k for _, k in tally.statuses})
    codes = sorted(
        {c for c, _ in tally.statuses}, key=lambda c: -sum(n for (s, _), n in tally.statuses.items() if s == c)
    )
    print(f"{'status':<20}" + "".join(f"{k:>20}" for k in kinds) + f"{'total':>10}")
    for code in codes:
        row = [tally.statuses[(code, k)] for k in kinds]
        print(f"{code:<20}" + "".join(f"{n:>20}" for n in row) + f"{sum(row):>10}")
    lat = sorted(tally.latencies)
    p50, p99 = (statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]) if lat else (0.0, 0.0)
    print(f"\ncalls {calls} in {seconds:.0f} s; per call p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    print(
        f"UNKNOWN/INTERNAL or empty message: {len(tally.untyped)}; crashes: {len(tally.crashes)}; "
        f"router still serving: {'yes' if serving else 'NO'}"
    )
    return {
        "calls": calls,
        "seconds": round(seconds, 1),
        "latency_ms": {"p50": round(p50 * 1000, 2), "p99": round(p99 * 1000, 2)},
        "statuses": {f"{c} / {k}": n for (c, k), n in sorted(tally.statuses.items())},
        "untyped": len(tally.untyped),
        "untyped_samples": tally.untyped[:SAMPLES_KEPT],
        "crashes": len(tally.crashes),
        "crash_samples": tally.crashes[:SAMPLES_KEPT],
        "still_serving": serving,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="calls to draw (hypothesis max_examples)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (same seed, same calls)")
    parser.add_argument("--out", type=Path, default=RESULTS / "fuzz.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        spec = fuzz_spec(write_tokens(Path(work) / "tokens.env"))
        with threaded_router(spec) as target, grpc.insecure_channel(target) as channel:
            start = time.perf_counter()
            tally = run(args.examples, args.seed, channel)
            seconds = time.perf_counter() - start
            serving = still_serves(channel)
    summary = {"examples": args.examples, "seed": args.seed, **report(tally, seconds, serving)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if not tally.untyped and not tally.crashes and serving else 1


if __name__ == "__main__":
    sys.exit(main())
