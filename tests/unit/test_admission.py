import math

import pytest

from builders import make_request, make_spec
from shardline.errors import InvalidArgument, NotFound
from shardline.router.validation import admit

SPEC = make_spec(
    limits={
        "max_tokens": 100,
        "default_max_tokens": 16,
        "max_prompt_bytes": 64,
        "max_stop_strings": 2,
        "max_stop_string_chars": 8,
    }
)


def check(**kwargs):
    return admit(make_request(**kwargs), SPEC, timeout_s=30.0)


def test_defaults_fill_unset_sampling_fields():
    req = check()
    assert (req.max_tokens, req.temperature, req.top_p, req.top_k, req.stop, req.seed) == (16, 1.0, 1.0, 0, (), None)
    assert req.timeout_s == 30.0
    assert len(req.request_id) == 32


def test_zero_temperature_is_kept_not_defaulted():
    assert check(temperature=0.0).temperature == 0.0


def test_client_request_id_is_echoed():
    assert check(request_id="abc-1").request_id == "abc-1"


def test_unknown_model_is_not_found_and_lists_served_models():
    with pytest.raises(NotFound, match="model 'nope' is not served; served models: tiny-llama"):
        check(model="nope")


def test_missing_model_is_invalid():
    with pytest.raises(InvalidArgument, match="model is required"):
        check(model="")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_tokens", 0, r"max_tokens must be at least 1 \(got 0\)"),
        ("max_tokens", 101, "max_tokens is 101; the limit is 100"),
        ("temperature", -0.5, r"temperature must be in \[0, 2.0\] \(got -0.5\)"),
        ("temperature", math.nan, r"temperature must be in \[0, 2.0\] \(got nan\)"),
        ("temperature", math.inf, r"\(got inf\)"),
        ("top_p", 0.0, r"top_p must be in \(0, 1\] \(got 0.0\)"),
        ("top_p", 1.5, r"\(got 1.5\)"),
        ("top_k", 10**6, "top_k is 1000000; the limit is 100000"),
    ],
)
def test_bad_sampling_values_quote_value_and_limit(field, value, message):
    with pytest.raises(InvalidArgument, match=message):
        check(**{field: value})


def test_prompt_limits():
    with pytest.raises(InvalidArgument, match="prompt is empty"):
        check(prompt="")
    with pytest.raises(InvalidArgument, match="prompt is 65 bytes; max_prompt_bytes is 64"):
        check(prompt="x" * 65)
    with pytest.raises(InvalidArgument, match="prompt is 66 bytes"):
        check(prompt="é" * 33)  # bytes, not characters


def test_stop_string_limits():
    with pytest.raises(InvalidArgument, match="3 stop strings; max_stop_strings is 2"):
        check(stop=["a", "b", "c"])
    with pytest.raises(InvalidArgument, match=r"stop\[0\] is empty"):
        check(stop=[""])
    with pytest.raises(InvalidArgument, match=r"stop\[1\] is 9 chars; max_stop_string_chars is 8"):
        check(stop=["ok", "x" * 9])
    assert check(stop=["a", "a"]).stop == ("a",)


def test_bad_request_id_is_rejected():
    with pytest.raises(InvalidArgument, match="request_id must be printable ASCII"):
        check(request_id="a\nb")
    with pytest.raises(InvalidArgument, match="got 200 chars"):
        check(request_id="a" * 200)
