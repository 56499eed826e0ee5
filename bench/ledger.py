"""Tenant-ledger cost per request: in-process vs the shared ledger actor.

One request's ledger calls, as the router makes them with auth rate limits on:
take (rate-limit bucket), standing (credit left and pace), reserve, settle. Arms:
- `local`: `LocalLedgers` in this process (tests, a router outside Ray);
- `shared, no checkpoint`: the ledger actor with its GCS writes replaced by nothing,
  to show what the actor hop alone costs;
- `shared`: the ledger actor as routers use it (serve/ledger.py), checkpointing to
  the GCS key-value store on every reserve and settle.
Each arm runs sequentially from this process (one request at a time: the added
latency), then from 2 client processes x `--concurrency` requests at once (the
ledger's throughput when routers share it). Plus one GCS put alone.

    .venv/bin/python bench/ledger.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
RESULTS = ROOT / "bench" / "results"
NAMESPACE = "shardline-ledger-bench"
TENANT = "bench"


class NoCheckpoint:
    def load(self) -> bytes | None:
        return None

    async def save(self, value: bytes) -> None:
        pass


def bench_spec(name: str):
    from shardline.spec import validate_spec

    return validate_spec(
        {
            "name": name,
            "models": [{"name": "m", "path": "/models/m", "max_model_len": 512}],
            "router": {"port": 0},
            "policies": {"tenants": [{"name": TENANT, "budget": 1e12, "window_s": 3600}]},
        }
    )


async def one_request(ledgers) -> float:
    began = time.perf_counter()
    await ledgers.take(TENANT)
    await ledgers.standing(TENANT)
    reservation = await ledgers.reserve(TENANT, 1.0, 60.0)
    await ledgers.settle(TENANT, reservation, 0.5)
    return (time.perf_counter() - began) * 1000


async def run_requests(ledgers, requests: int, concurrency: int) -> list[float]:
    latencies: list[float] = []

    async def worker(n: int):
        for _ in range(n):
            latencies.append(await one_request(ledgers))

    share = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(worker(n) for n in share))
    return latencies


def summary(latencies: list[float], seconds: float) -> dict:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "requests_per_s": len(ordered) / seconds,
    }


def client_task():
    import ray

    @ray.remote(num_cpus=0)
    def client(actor, requests: int, concurrency: int) -> list[float]:
        from shardline.serve.ledger import SharedLedgers

        return asyncio.run(run_requests(SharedLedgers(actor), requests, concurrency))

    return client


def concurrent_arm(actor, requests: int, concurrency: int) -> dict:
    import ray

    client = client_task()
    ray.get(client.remote(actor, 20, 1))  # warm both worker processes' imports
    began = time.perf_counter()
    parts = ray.get([client.remote(actor, requests, concurrency) for _ in range(2)])
    return summary([x for part in parts for x in part], time.perf_counter() - began)


def sequential_arm(ledgers, requests: int) -> dict:
    asyncio.run(run_requests(ledgers, 20, 1))  # warm-up
    began = time.perf_counter()
    latencies = asyncio.run(run_requests(ledgers, requests, 1))
    return summary(latencies, time.perf_counter() - began)


def gcs_put_ms(samples: int) -> float:
    import ray
    from ray._raylet import GcsClient

    gcs = GcsClient(address=ray.get_runtime_context().gcs_address)
    value = json.dumps({"spent": 1.0, "open": [[i, 1.0, 1e9] for i in range(16)]}).encode()
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        gcs.internal_kv_put(b"ledger/bench-probe", value, True, b"shardline", timeout=10.0)
        times.append((time.perf_counter() - began) * 1000)
    gcs.internal_kv_del(b"ledger/bench-probe", False, b"shardline", timeout=10.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="per arm, sequential; per client, concurrent")
    parser.add_argument("--concurrency", type=int, default=16, help="requests at once per client process")
    args = parser.parse_args()

    import ray

    from shardline.router.ledger import LocalLedgers, Terms
    from shardline.serve import lifecycle
    from shardline.serve.ledger import KV_NAMESPACE, LedgerActor, SharedLedgers, checkpoint_key, ledger_actor

    lifecycle.connect(None)
    rows = {}
    try:
        spec = bench_spec("ledger-bench")
        rows["local"] = {"sequential": sequential_arm(LocalLedgers(spec), args.requests)}
        bare = ray.remote(LedgerActor).options(num_cpus=0).remote(spec.name, Terms.of(spec), NoCheckpoint())
        shared = ledger_actor(spec, NAMESPACE)
        for name, actor in (("shared, no checkpoint", bare), ("shared", shared)):
            rows[name] = {
                "sequential": sequential_arm(SharedLedgers(actor), args.requests),
                "concurrent": concurrent_arm(actor, args.requests, args.concurrency),
            }
        put_ms = gcs_put_ms(200)
        ray.kill(shared, no_restart=True)
        ray.experimental.internal_kv._internal_kv_del(checkpoint_key(spec.name), namespace=KV_NAMESPACE)
    finally:
        ray.shutdown()
    report(rows, put_ms, args)


def report(rows: dict, put_ms: float, args) -> None:
    print(f"\nledger calls per request: take + standing + reserve + settle; GCS put alone: {put_ms:.2f} ms p50")
    print(f"| arm | sequential p50 / p99 ms | 2 clients x {args.concurrency}: req/s | p50 / p99 ms |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        s, c = row["sequential"], row.get("concurrent")
        concurrent = f"{c['requests_per_s']:.0f} | {c['p50_ms']:.2f} / {c['p99_ms']:.2f}" if c else "- | -"
        print(f"| {name} | {s['p50_ms']:.3f} / {s['p99_ms']:.3f} | {concurrent} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "ledger.json"
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.1f}")
    result = {"arms": rows, "gcs_put_p50_ms": put_ms, "load_average_1m": load, "args": vars(args)}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
