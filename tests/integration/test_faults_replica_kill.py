"""SIGKILL one of two real vLLM replicas while 200 streams run through the router.

Nothing may be lost or corrupted: requests that had no token yet are retried on
the survivor, streams cut midway are resumed there and must match, token for
token, the greedy output of a fault-free pass. Serve then replaces the replica.
The long version with figures: `bench/faults.py`.
"""

import asyncio

import pytest
import yaml
from conftest import ROOT, deployed

from shardline.faults.replica_kill import replica_kill

APP = "shardline-kill"


@pytest.fixture(scope="module")
def two_replicas(ray_cluster):
    data = yaml.safe_load((ROOT / "deployments" / "demo.yaml").read_text())
    small = next(m for m in data["models"] if m["name"] == "kv-small")
    small.pop("compression")
    small["replicas"] = {"min": 2, "max": 2}
    with deployed({"name": APP, "models": [small], "router": {}}) as app:
        yield app


def test_killing_a_replica_mid_stream_loses_nothing(two_replicas):
    result = asyncio.run(replica_kill(two_replicas.target, APP, "kv-small", requests=200, concurrency=16,
                                      max_tokens=48))
    base, fault = result["baseline"], result["fault"]
    print("replica kill:", {k: v for k, v in result.items() if k not in ("baseline", "fault")}, fault)
    assert base["verdicts"]["OK"] == 200, base
    v = fault["verdicts"]
    assert v["LOST"] == v["CORRUPT"] == 0, fault["corrupt"]
    assert fault["untyped"] == 0
    assert v["OK"] + v["OK_AFTER_RETRY"] == 200, fault
    assert fault["resumed_mid_stream"] > 0, "no stream was cut midway: the kill came too late"
    assert result["engine_processes_gone_s"] is not None, "the killed replica left engine processes behind"
    assert result["replaced_s"] is not None, "Serve did not replace the killed replica"
