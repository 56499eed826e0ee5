"""The spec's policy sections: compression, tier prices, tenants, cascades."""

import pytest

from builders import make_spec
from shardline.errors import SpecError
from shardline.spec import parse_spec

MODELS = """
models:
  - {name: small, path: /m/s, cost: {input_per_1k: 0.1, output_per_1k: 0.2}, compression: {}}
  - {name: large, path: /m/l}
"""


def errors_of(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="s.yaml")
    return str(info.value)


def test_policy_sections_parse_with_defaults():
    spec = parse_spec(
        MODELS + "policies: {tenants: [{name: a, budget: 2}], default_tenant: a, "
        "cascades: [{name: auto, tiers: [small, large]}]}",
        source="s.yaml",
    )
    small = spec.model("small")
    assert (small.compression.policy, small.compression.target_ratio, small.compression.min_prompt_tokens) == (
        "extractive",
        4.0,
        2000,
    )
    assert spec.policies.tenant("a").window_s == 3600.0 and spec.policies.cascade("auto").escalate_above == 0.5
    assert make_spec().policies.cascades == () and make_spec().models[0].compression is None


@pytest.mark.parametrize(
    "policies, message",
    [
        ("{cascades: [{name: auto, tiers: [small, huge]}]}", "cascade 'auto' names unserved models: huge"),
        ("{cascades: [{name: small, tiers: [small, large]}]}", "cascade 'small' has the name of a served model"),
        ("{tenants: [{name: a, budget: 1}], default_tenant: b}", "default_tenant 'b' is not among tenants (a)"),
        ("{tenants: [{name: a, budget: 0}]}", "greater than 0"),
    ],
)
def test_bad_policy_sections_are_rejected(policies, message):
    assert message in errors_of(MODELS + f"policies: {policies}")


def test_unknown_compression_policy_is_rejected():
    assert "'none', 'truncate_middle', 'extractive' or 'self_information'" in errors_of(
        "models: [{name: m, path: /m, compression: {policy: zip}}]"
    )


MIX = (
    "{weights: {mean_nll: 1.5, max_spill: 0.5}, mean: {mean_nll: 0.4, max_spill: 1.0}, "
    "std: {mean_nll: 0.2, max_spill: 2}}"
)


def test_a_fitted_uncertainty_mix_parses_with_raw_logits():
    spec = parse_spec(
        f"models: [{{name: m, path: /m, engine_args: {{logprobs_mode: raw_logits}}, uncertainty: {MIX}}}]",
        source="s.yaml",
    )
    assert spec.model("m").uncertainty.weights == {"mean_nll": 1.5, "max_spill": 0.5}


@pytest.mark.parametrize(
    "model, message",
    [
        (f"uncertainty: {MIX}", "uncertainty weighs max_spill, which needs engine_args.logprobs_mode 'raw_logits'"),
        (
            "uncertainty: {weights: {entropy: 1}, mean: {entropy: 0}, std: {entropy: 1}}",
            "uncertainty components entropy are unknown; known: mean_nll,",
        ),
        (
            "uncertainty: {weights: {mean_nll: 1}, mean: {}, std: {mean_nll: 1}}",
            "uncertainty.mean names []; it must name the weights' components ['mean_nll']",
        ),
        (
            "uncertainty: {weights: {mean_nll: 1}, mean: {mean_nll: 0}, std: {mean_nll: 0}}",
            "uncertainty.std[mean_nll] is 0.0; it must be greater than 0",
        ),
        ("uncertainty: {weights: {mean_nll: .nan}, mean: {mean_nll: 0}, std: {mean_nll: 1}}", "must be finite"),
    ],
)
def test_bad_uncertainty_mixes_are_rejected(model, message):
    assert message in errors_of(f"models: [{{name: m, path: /m, {model}}}]")
