"""Rolling updates and graceful drain on a real vLLM replica (kv-small; one replica:
each engine start costs a minute or more on two cores, and one shows the same),
scored by the outcome-accounting harness: nothing lost, nothing corrupted, no
untyped status.

One app goes through its life in order: a rolling update under load (every
replica replaced, the router's included, on the same port), a failing update
under load (the old version keeps serving), then `shardline down` with live
streams (NOT_SERVING first, the streams finish, new calls get UNAVAILABLE fast).
The drivers (and their long versions for bench/faults.py) live in
shardline/faults/rolling_update.py and shardline/faults/drain.py.
"""

import asyncio
import copy
import socket

import pytest
import yaml
from ray import serve

from live import DEPLOY_TIMEOUT_S, ROOT
from shardline.faults.drain import drain_under_load
from shardline.faults.rolling_update import rolling_update
from shardline.serve import lifecycle
from shardline.serve.deployment_handles import llm_deployment_name, running_replicas
from shardline.spec import validate_spec

APP = "shardline-drain"
MODEL = "kv-small"
DRAIN_TIMEOUT_S = 30.0
FAILING_UPDATE_WAIT_S = 25.0


def free_port() -> int:
    """A fixed port: the new router of a rolling update must bind the one clients use."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_spec(port: int) -> dict:
    data = yaml.safe_load((ROOT / "deployments" / "kv-tiers.yaml").read_text())
    small = next(m for m in data["models"] if m["name"] == MODEL)
    small.pop("compression")
    small["replicas"] = {"min": 1, "max": 1}
    return {
        "name": APP,
        "models": [small],
        "router": {"port": port},
        "rollout": {"drain_timeout_s": DRAIN_TIMEOUT_S, "surge_percent": 100},
    }


def changed(data: dict, **model_fields) -> dict:
    data = copy.deepcopy(data)
    data["models"][0].update(model_fields)
    return data


@pytest.fixture(scope="module")
def app(deployment):
    data = app_spec(free_port())
    endpoint = lifecycle.deploy(validate_spec(data), DEPLOY_TIMEOUT_S)
    try:
        yield data, endpoint.target
    finally:
        if APP in serve.status().applications:
            lifecycle.undeploy(APP)


def assert_nothing_lost(tally: dict) -> None:
    v = tally["verdicts"]
    assert v["LOST"] == v["CORRUPT"] == 0, tally["corrupt"]
    assert tally["untyped"] == 0, tally["codes"]


def test_a_rolling_update_under_load_fails_no_request(app):
    data, target = app
    v2 = validate_spec(changed(data, env={"SHARDLINE_ROLLOUT_TEST": "v2"}))
    # Light load: on 2 cores, new engines start several times slower under a heavy one.
    result = asyncio.run(
        rolling_update(target, MODEL, lambda: lifecycle.deploy(v2, DEPLOY_TIMEOUT_S), concurrency=2, max_tokens=32)
    )
    print("rolling update:", result)
    assert result["update_error"] == ""
    for group in ("client_retry", "no_client_retry"):
        assert_nothing_lost(result[group])
    assert_every_call_reached_a_router_that_served_it(result)


def assert_every_call_reached_a_router_that_served_it(result: dict) -> None:
    """Old engine replicas serve until their replacements are ready and the router
    follows Serve's replica set, so no router ever refuses a call ("no ready replica").
    The one failure left is below the router: the old router's listener closes, a
    connection queued on it is reset, and a client without retries sees UNAVAILABLE
    ("failed to connect") until its channel reconnects. The retry policy covers it."""
    retried, plain = result["client_retry"], result["no_client_retry"]
    assert retried["requests"] > 0 and retried["verdicts"]["OK"] == retried["requests"], retried
    assert plain["requests"] > 0, plain
    assert plain["verdicts"]["OK"] + plain["connection_failures"] == plain["requests"], plain


def test_a_failing_update_leaves_the_old_version_serving(app):
    data, target = app
    # vLLM refuses a max_model_len beyond the model's 16384 positions: every new replica fails.
    bad = validate_spec(changed(data, max_model_len=20000))
    result = asyncio.run(
        rolling_update(
            target, MODEL, lambda: lifecycle.deploy(bad, FAILING_UPDATE_WAIT_S), concurrency=2, max_tokens=32
        )
    )
    print("failing update:", result)
    assert "DeployError" in result["update_error"]
    for group in ("client_retry", "no_client_retry"):
        assert_nothing_lost(result[group])
    assert_every_call_reached_a_router_that_served_it(result)
    deployment = serve.status().applications[APP].deployments[llm_deployment_name(MODEL)]
    assert running_replicas(deployment) == 1  # the old one, still serving


def test_down_drains_live_streams_and_refuses_new_calls(app):
    _, target = app
    result = asyncio.run(drain_under_load(target, MODEL, lambda: lifecycle.undeploy(APP), streams=16, max_tokens=200))
    print(
        "down:",
        {k: v for k, v in result.items() if k not in ("live", "probes")},
        result["live"],
        result["probes"]["codes"],
    )
    live, probes = result["live"], result["probes"]
    assert_nothing_lost(live)
    assert live["verdicts"]["OK"] == 16, live
    # Orderings within this one drain, not seconds from a quiet machine: the router
    # said NOT_SERVING before its live streams ended, refused a new call faster than
    # it gave a live stream its first token, and `down` returned without waiting out
    # the drain timeout once the streams were done.
    assert result["not_serving_s"] is not None and result["not_serving_s"] < result["drain_s"], result
    assert_nothing_lost(probes)
    assert set(probes["codes"]) <= {"OK", "UNAVAILABLE"}, probes["codes"]
    assert probes["reject_p99_s"] < live["ttft_p50_s"], (probes["reject_p99_s"], live["ttft_p50_s"])
    assert result["stop_s"] - result["drain_s"] < DRAIN_TIMEOUT_S, result
