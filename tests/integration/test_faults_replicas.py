"""Replica failures on the real stack, on one app of two kv-small replicas: SIGKILL a
replica process while 200 streams run, then kill (SIGKILL) every vLLM EngineCore
process of the model, then one replica's, then stop (SIGSTOP) one.

Two kv-small replicas with a 1 s health period and a 2 s probe timeout. Nothing
may be lost or corrupted: with no replica left the router's grpc.health says
NOT_SERVING, in-flight streams end typed at once and new calls get UNAVAILABLE,
then SERVING again once Serve has replaced them; streams cut on one broken
replica resume on the other and match a fault-free pass token for token, and the
broken replica leaves within seconds. The scenarios live in
`shardline.faults.replica_kill` and `shardline.faults.replica_health` (`bench/faults.py`
runs longer versions). One app for all of them: each engine start costs a minute
or more on two cores.
"""

import asyncio

import pytest
import yaml

from live import ROOT, deployed
from shardline.faults.replica_health import all_engines_dead, engine_death, stuck_replica
from shardline.faults.replica_kill import replica_kill
from shardline.faults.workload import greedy_batch, reference_tokens

pytestmark = pytest.mark.integration

APP = "shardline-health"
MODEL = "kv-small"
HEALTH = {"period_s": 1.0, "probe_timeout_s": 2.0, "timeout_s": 5.0}
REQUESTS, TOKENS = 48, 48


@pytest.fixture(scope="module")
def two_replicas(ray_cluster):
    data = yaml.safe_load((ROOT / "deployments" / "kv-tiers.yaml").read_text())
    small = next(m for m in data["models"] if m["name"] == MODEL)
    small.pop("compression")
    small.update(replicas={"min": 2, "max": 2}, health=HEALTH)
    with deployed({"name": APP, "models": [small], "router": {"health_period_s": 0.5}}) as app:
        yield app


@pytest.fixture(scope="module")
def reference(two_replicas):
    tokens = asyncio.run(reference_tokens(two_replicas.target, greedy_batch(MODEL, REQUESTS, TOKENS)))
    assert [len(t) for t in tokens.values()] == [TOKENS] * REQUESTS
    return tokens


def _summary(t):
    return {k: t[k] for k in ("verdicts", "untyped", "ttft_p50_s", "ttft_p99_s", "e2e_p99_s")}


def _assert_nothing_lost(result):
    fault = result["fault"]
    print(f"{result['signal']}:", {k: v for k, v in result.items() if k != "fault"}, _summary(fault))
    v = fault["verdicts"]
    assert v["LOST"] == v["CORRUPT"] == 0, fault["corrupt"]
    assert fault["untyped"] == 0, fault["codes"]
    assert v["OK"] + v["OK_AFTER_RETRY"] == REQUESTS, fault
    assert result["resumed_streams"] > 0, "no stream was cut on the broken replica"
    assert result["orphans"] == [], "processes of the broken replica outlived it"


# In this order: each of the first three waits until Serve has replaced what it broke.
def test_killing_a_replica_mid_stream_loses_nothing(two_replicas):
    """Requests that had no token yet are retried on the survivor; streams cut midway
    are resumed there and match a fault-free pass token for token."""
    result = asyncio.run(replica_kill(two_replicas.target, APP, MODEL, requests=200, concurrency=16, max_tokens=48))
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


def test_with_every_engine_dead_the_model_is_not_serving_until_replaced(two_replicas):
    result = asyncio.run(all_engines_dead(two_replicas.target, APP, MODEL, streams=16))
    print(
        "all engines dead:",
        {k: v for k, v in result.items() if k not in ("outage", "in_flight")},
        "in flight:",
        _summary(result["in_flight"]),
        result["in_flight"]["codes"],
        "outage:",
        _summary(result["outage"]),
    )
    flight = result["in_flight"]
    assert flight["verdicts"]["LOST"] == flight["verdicts"]["CORRUPT"] == flight["untyped"] == 0, flight
    # Nowhere to resume: each stream ends typed (ABORTED, with its tokens) once the
    # router sees no replica left, not when its deadline passes.
    assert set(flight["codes"]) <= {"ABORTED", "UNAVAILABLE"}, flight["codes"]
    # Both came long before the replacements served again (ordering, not seconds).
    assert result["serving_s"] is not None and result["replaced_s"] is not None, "Serve did not replace them"
    assert result["typed_max_s"] < result["serving_s"], result
    assert result["not_serving_s"] is not None and result["not_serving_s"] < result["serving_s"], result
    outage = result["outage"]
    assert outage["verdicts"]["REJECTED_RETRYABLE"] == outage["requests"], outage
    assert set(outage["codes"]) == {"UNAVAILABLE"}


def test_engine_death_resumes_the_streams_elsewhere_and_the_replica_is_replaced(two_replicas, reference):
    result = asyncio.run(
        engine_death(two_replicas.target, APP, MODEL, requests=REQUESTS, max_tokens=TOKENS, reference=reference)
    )
    _assert_nothing_lost(result)
    # The replica leaves as soon as vLLM reports its engine dead: before Serve's own
    # health check (a period, then its timeout) could have removed it.
    assert result["left_s"] < HEALTH["period_s"] + HEALTH["timeout_s"], result
    assert result["replaced_s"] is not None, "Serve did not replace the replica"


def test_a_stuck_engine_is_detected_within_a_period_and_a_probe(two_replicas, reference):
    result = asyncio.run(
        stuck_replica(
            two_replicas.target,
            APP,
            MODEL,
            requests=REQUESTS,
            max_tokens=TOKENS,
            reference=reference,
            replace_timeout_s=0,
        )
    )  # replacement: shown above
    _assert_nothing_lost(result)
    # Found by our probe (a period, then `probe_timeout_s`: about 3 s), not by Serve's
    # health-check timeout, which would take a period plus `timeout_s`.
    assert result["left_s"] < HEALTH["period_s"] + HEALTH["timeout_s"], result
