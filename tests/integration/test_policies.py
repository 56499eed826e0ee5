"""Router policies on the real stack: vLLM logprobs, compression, cascade, budgets.

The shared deployment is deployments/kv-tiers.yaml: kv-small (extractive compression
from 1500 tokens) and kv-large, the `kv-auto` cascade and tenants `demo`/`trial`.
"""

import grpc
import pytest
from ray import serve

from shardline.client import make_request
from shardline.generation import GenerationRequest
from shardline.models import tasks
from shardline.serve.deployment_handles import llm_deployment_name
from shardline.v1 import inference_pb2 as pb
from shardline.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

APP = "shardline-it"


def ask(deployment, model, prompt, tenant="demo", uncertainty=False, compression=None, max_tokens=8):
    request = make_request(model, prompt, max_tokens=max_tokens, temperature=0.0)
    request.tenant, request.uncertainty = tenant, uncertainty
    if compression is not None:
        request.compression.CopyFrom(compression)
    with grpc.insecure_channel(deployment.target) as channel:
        return pb_grpc.InferenceStub(channel).Generate(request, timeout=120)


def item(words, seed=0):
    return tasks.items_for_length(seed, 1, words)[0]


def test_engine_returns_top2_logprobs_and_prompt_self_information(deployment):
    handle = serve.get_deployment_handle(llm_deployment_name("kv-small"), app_name=APP).options(stream=True)
    prompt = item(100).prompt
    request = GenerationRequest(
        "it-lp", prompt, max_tokens=4, temperature=0.0, ignore_eos=True, logprobs=2, prompt_logprobs=True
    )
    deltas = list(handle.generate.remote(request))
    steps = [s for d in deltas for s in d.logprobs]
    assert len(steps) == 4
    for step in steps:  # greedy: the sampled token is the top-1
        assert len(step.top) == 2 and step.top[0] >= step.top[1] and step.logprob == pytest.approx(step.top[0])
    nll = deltas[0].prompt_nll
    assert len(nll) >= len(prompt.split()) - 2 and all(n >= 0 and 0 <= s < e <= len(prompt) for s, e, n in nll)


def test_uncertainty_is_reported_with_components_when_asked(deployment):
    reply = ask(deployment, "kv-small", item(100).prompt, uncertainty=True)
    u = reply.report.uncertainty
    assert 0.0 <= u.score <= 1.0
    assert set(u.components) == {"mean_nll", "low_quantile_prob", "min_margin", "min_window_prob"}
    assert not ask(deployment, "kv-small", item(100).prompt).report.HasField("uncertainty")


def test_cascade_answers_with_a_tier_and_charges_the_tenant(deployment):
    replies = [ask(deployment, "kv-auto", it.prompt) for it in tasks.items_for_length(7, 4, 300)]
    for reply in replies:
        d = reply.report.decoding
        assert list(d.tiers) == ["kv-small", "kv-large"] and d.tenant == "demo"
        assert d.answered_by == ("kv-large" if d.escalated else "kv-small")
        assert d.cost_charged > 0 and 0 < d.budget_left < 100.0
    assert replies[-1].report.decoding.budget_left < replies[0].report.decoding.budget_left


def test_spec_extractive_compression_shortens_a_long_prompt(deployment):
    long = item(1800, seed=3)
    reply = ask(deployment, "kv-small", long.prompt)
    c = reply.report.compression
    assert (c.policy, c.skipped) == ("extractive", "")
    assert c.original_prompt_tokens >= 1500 and c.original_prompt_tokens / c.sent_prompt_tokens >= 3.9
    assert reply.usage.prompt_tokens <= c.sent_prompt_tokens + 2  # the engine adds BOS


@pytest.mark.parametrize("policy", ["truncate_middle", "self_information"])
def test_request_chooses_the_policy(deployment, policy):
    long = item(1800, seed=4)
    options = pb.CompressionOptions(policy=policy, target_ratio=4.0)
    c = ask(deployment, "kv-small", long.prompt, compression=options).report.compression
    assert (c.policy, c.skipped) == (policy, "")
    assert c.original_prompt_tokens / c.sent_prompt_tokens >= 3.9


def test_budget_that_cannot_pay_is_resource_exhausted(deployment):
    with pytest.raises(grpc.RpcError) as info:
        ask(deployment, "kv-large", item(300).prompt, tenant="trial")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "tenant 'trial' has 0.0005 credits left" in info.value.details()


def test_budget_clamps_max_tokens_on_the_cheap_tier(deployment):
    reply = ask(
        deployment,
        "kv-small",
        "The code of amber is 4 8 2 1 . Question : what is the code of amber ? Answer :",
        tenant="trial",
        max_tokens=64,
    )
    d = reply.report.decoding
    assert d.max_tokens < 64 and reply.usage.completion_tokens <= d.max_tokens and d.cost_charged <= 0.0005
