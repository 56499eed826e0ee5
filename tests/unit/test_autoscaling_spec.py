"""`replicas.autoscaling` and `replicas.min: 0` in the spec."""

import pytest

from builders import make_spec
from shardline.errors import SpecError
from shardline.spec import parse_spec


def errors_of(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="s.yaml")
    return str(info.value)


def replicas_yaml(lines: str) -> str:
    indented = "".join(f"      {line}\n" for line in lines.split("\n"))
    return "models:\n  - name: m\n    path: p\n    replicas:\n" + indented


def test_autoscaling_defaults_are_documented_values():
    a = make_spec(model={"replicas": {"min": 1, "max": 3}}).models[0].replicas.autoscaling
    assert (a.waiting_per_replica, a.kv_cache_usage, a.ttft_target_s, a.ttft_window_s) == (2.0, 0.9, None, 10)
    assert (a.upscale_delay_s, a.downscale_delay_s, a.scale_to_zero_delay_s, a.hold_timeout_s) == (10, 60, 300, 60)


def test_min_zero_is_allowed_and_max_must_stay_positive():
    assert make_spec(model={"replicas": {"min": 0, "max": 2}}).models[0].replicas.min == 0
    assert "replicas.max: Input should be greater than or equal to 1 (got 0)" in errors_of(
        replicas_yaml("min: 0\nmax: 0")
    )


def test_look_back_window_must_exceed_the_metrics_interval():
    text = replicas_yaml("max: 2\nautoscaling:\n  metrics_interval_s: 2.0\n  look_back_s: 1.5")
    assert "look_back_s (1.5) must be greater than metrics_interval_s (2)" in errors_of(text)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("kv_cache_usage: 1.5", "kv_cache_usage: Input should be less than or equal to 1 (got 1.5)"),
        ("scale_down_fraction: 1.0", "scale_down_fraction: Input should be less than 1 (got 1.0)"),
        ("hold_timeout_s: 0.0", "hold_timeout_s: Input should be greater than 0 (got 0.0)"),
        ("ttft_window_s: 601", "ttft_window_s: Input should be less than or equal to 600 (got 601)"),
        ("waiting_per_replica: -1.0", "waiting_per_replica: Input should be greater than or equal to 0 (got -1.0)"),
        ("ttl: 3", "s.yaml:7 models[0].replicas.autoscaling.ttl: unknown key 'ttl'"),
    ],
)
def test_autoscaling_fields_are_bounded_and_strict(line, expected):
    assert expected in errors_of(replicas_yaml(f"max: 2\nautoscaling:\n  {line}"))


def test_hold_must_end_before_the_deadline_cap():
    text = (
        replicas_yaml("min: 0\nmax: 2\nautoscaling:\n  hold_timeout_s: 300.0")
        + "router:\n  limits:\n    default_deadline_s: 300.0\n"
    )
    assert (
        "model 'm': replicas.autoscaling.hold_timeout_s (300) must be less than router.limits.default_deadline_s (300)"
        in errors_of(text)
    )
    # Only a model that scales to zero holds requests.
    parse_spec(text.replace("min: 0", "min: 1"), source="s.yaml")
