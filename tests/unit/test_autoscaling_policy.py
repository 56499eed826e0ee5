"""The autoscaling decision (policies/autoscaling.py) over fabricated replica reports,
and its translation from Serve's AutoscalingContext (serve/autoscaling.py)."""

from types import SimpleNamespace

import pytest

from shardline.policies.autoscaling import Bounds, ReplicaLoad, Signals, State, decide
from shardline.serve import autoscaling as serve_autoscaling
from shardline.spec.autoscaling import AutoscalingSpec

CONFIG = AutoscalingSpec(upscale_delay_s=10, downscale_delay_s=60, scale_to_zero_delay_s=300, ttft_target_s=2.0)
NOW = CONFIG.model_copy(update={"upscale_delay_s": 0})
"""No upscale delay: the first overloaded call decides."""
BOUNDS = Bounds(min=1, max=4, target_ongoing_requests=16)
IDLE = ReplicaLoad()
BUSY = ReplicaLoad(waiting=8, running=4, kv_cache_usage=0.5, ttft_s=0.5)


def run(loads, ongoing, running, times, config=CONFIG, bounds=BOUNDS, target=None):
    """Feeds the same signals at each time in `times`; returns every decision."""
    state, decisions = State(), []
    for now in times:
        d = decide(Signals(tuple(loads), ongoing), config, bounds, running, target or running, now, state)
        decisions.append(d)
        state = d.state
    return decisions


def test_waiting_requests_scale_up_only_after_the_upscale_delay():
    decisions = run([BUSY], ongoing=12, running=1, times=[0, 5, 9.9, 10])
    assert [d.replicas for d in decisions] == [1, 1, 1, 2]  # (4 running + 8 waiting) / (4 + 2)
    assert "requests waiting" in decisions[-1].reason


def test_scale_up_is_at_least_one_replica_and_at_most_max():
    [small] = run([ReplicaLoad(waiting=3, running=8)], ongoing=11, running=2, times=[0], config=NOW)
    [huge] = run([ReplicaLoad(waiting=500, running=4)], ongoing=504, running=2, times=[0], config=NOW)
    assert small.replicas == 3
    assert huge.replicas == BOUNDS.max


@pytest.mark.parametrize(
    ("load", "signal"),
    [
        (ReplicaLoad(kv_cache_usage=0.95, running=2), "KV-cache usage"),
        (ReplicaLoad(ttft_s=3.0, running=1), "TTFT"),
    ],
)
def test_each_llm_signal_alone_scales_up(load, signal):
    [decision] = run([load], ongoing=2, running=1, times=[0], config=NOW)
    assert decision.replicas == 2
    assert signal in decision.reason


def test_ongoing_requests_scale_up_before_any_replica_reports():
    [decision] = run([], ongoing=40, running=1, times=[0], config=NOW)
    assert decision.replicas == 3  # 40 / 16 per replica
    assert "ongoing" in decision.reason


def test_a_break_in_overload_restarts_the_upscale_clock():
    state = State()
    for now, load in [(0, BUSY), (8, IDLE), (9, BUSY), (18, BUSY)]:
        d = decide(Signals((load,), 1), CONFIG, BOUNDS, 1, 1, now, state)
        state = d.state
    assert d.replicas == 1  # 9 s of overload since the break, not 18
    assert decide(Signals((BUSY,), 1), CONFIG, BOUNDS, 1, 1, 19, state).replicas > 1


def test_between_the_lines_nothing_changes():
    # KV 0.6: under the scale-up line (0.9), over the scale-down line (0.45).
    middle = ReplicaLoad(kv_cache_usage=0.6, running=2)
    decisions = run([middle, middle], ongoing=4, running=2, times=range(0, 1000, 50))
    assert {d.replicas for d in decisions} == {2}
    assert decisions[-1].state == State()


def test_idle_scales_down_one_replica_after_the_downscale_delay():
    decisions = run([IDLE, IDLE, IDLE], ongoing=0, running=3, times=[0, 30, 59, 60])
    assert [d.replicas for d in decisions] == [3, 3, 3, 2]


def test_no_scale_down_when_one_replica_fewer_would_be_overloaded():
    light = ReplicaLoad(running=5)
    decisions = run([light, light], ongoing=10, running=2, times=[0, 100, 200])
    assert {d.replicas for d in decisions} == {2}  # 10 on one replica > 0.5 x 16


def test_never_below_min():
    decisions = run([IDLE], ongoing=0, running=1, times=[0, 1000, 2000])
    assert {d.replicas for d in decisions} == {1}


def test_scale_to_zero_only_with_min_zero_after_its_own_delay():
    zero_ok = Bounds(min=0, max=2, target_ongoing_requests=16)
    decisions = run([IDLE], ongoing=0, running=1, times=[0, 299, 300], bounds=zero_ok)
    assert [d.replicas for d in decisions] == [1, 1, 0]
    # A request anywhere (even one a handle still holds) keeps the last replica.
    held = run([IDLE], ongoing=1, running=1, times=[0, 1000], bounds=zero_ok)
    assert {d.replicas for d in held} == {1}


def test_from_zero_one_replica_as_soon_as_a_request_waits():
    zero_ok = Bounds(min=0, max=2, target_ongoing_requests=16)
    [idle] = run([], ongoing=0, running=0, times=[0], bounds=zero_ok)
    [woken] = run([], ongoing=1, running=0, times=[0], bounds=zero_ok)
    assert (idle.replicas, woken.replicas) == (0, 1)


def test_in_transition_the_decision_holds_serves_target():
    # A second replica is starting: its absence must not count as overload again.
    [decision] = run([BUSY], ongoing=40, running=1, times=[0], target=2, config=NOW)
    assert decision.replicas == 2


def test_policy_reads_serves_context():
    policy = serve_autoscaling.LLMAutoscalingPolicy(
        AutoscalingSpec(upscale_delay_s=0).model_dump(mode="json"), min=1, max=3, target_ongoing_requests=16
    )
    replica = "r1"
    ctx = SimpleNamespace(
        deployment_name="llm-m",
        aggregated_metrics={
            serve_autoscaling.WAITING: {replica: 6.0},
            serve_autoscaling.RUNNING: {replica: 2.0},
            serve_autoscaling.KV_CACHE_USAGE: {replica: 0.3},
            serve_autoscaling.TTFT_S: {replica: 0.1},
        },
        running_replicas=[replica],
        total_num_requests=8.0,
        current_num_replicas=1,
        target_num_replicas=1,
        current_time=100.0,
        policy_state={"serve-internal": 1},
    )
    replicas, state = policy(ctx)
    assert replicas == 2  # (2 running + 6 waiting) / (2 + 2 allowed) = 2x
    assert state["serve-internal"] == 1
    assert "requests waiting" in state["shardline"]["reason"]


def test_serve_config_passes_the_decision_through():
    from builders import make_spec

    spec = make_spec(model={"replicas": {"min": 0, "max": 2, "autoscaling": {"metrics_interval_s": 0.5}}})
    model = spec.models[0]
    config = serve_autoscaling.autoscaling_config(model)
    assert (config["min_replicas"], config["max_replicas"]) == (0, 2)
    assert config["upscale_delay_s"] == config["downscale_delay_s"] == config["downscale_to_zero_delay_s"] == 0
    assert config["policy"]["policy_function"].endswith(":LLMAutoscalingPolicy")
    assert serve_autoscaling.replica_env(model) == {serve_autoscaling.PUSH_INTERVAL_ENV: "0.5"}
    # Serve accepts it as is.
    from ray.serve.config import AutoscalingConfig

    assert AutoscalingConfig(**config).policy.policy_kwargs["max"] == 2
