"""The policy stages of the router pipeline over gRPC (port 0) with fake replicas.

Two priced tiers (kv-small cheap and unsure on demand, kv-large) behind a cascade
`kv-auto`, two tenants. Fake replicas attach logprobs of a chosen confidence and
prompt self-information (digits surprising, words not), so every decision the
policies make is predictable. tests/integration repeats the essentials on vLLM.
"""

import contextlib
import math

import grpc
import pytest

from builders import make_request, make_spec
from fake_scorers import hash_embed, word_nll
from fakes import FakeEngine, fake_stack
from shardline.generation import TokenLogprob
from shardline.outcomes import Plan, Verdict, drive
from shardline.v1 import inference_pb2 as pb

SMALL = {
    "name": "kv-small",
    "path": "/models/kv-small",
    "max_model_len": 4096,
    "cost": {"input_per_1k": 0.1, "output_per_1k": 0.2},
}
LARGE = {
    "name": "kv-large",
    "path": "/models/kv-large",
    "max_model_len": 4096,
    "cost": {"input_per_1k": 1.0, "output_per_1k": 2.0},
    "compression": {"policy": "truncate_middle", "target_ratio": 4.0, "min_prompt_tokens": 100},
}
POLICIES = {
    "tenants": [{"name": "acme", "budget": 1.0}, {"name": "tiny", "budget": 0.001}],
    "cascades": [{"name": "kv-auto", "tiers": ["kv-small", "kv-large"], "escalate_above": 0.3}],
}
LONG = (
    " ".join(f"Filler sentence number {i} ." for i in range(60))
    + " The code of amber is 4 8 2 1 . "
    + " ".join(f"More filler {i} ." for i in range(60))
    + " Question : what is the code of amber ? Answer :"
)


class ScoredEngine(FakeEngine):
    """FakeEngine whose tokens all have probability `p` (top-2 gets the rest)."""

    def __init__(self, model, p=0.95):
        super().__init__(model, max_prompt_words=10_000)
        self.p = p
        self.prompts = []

    async def generate(self, request):
        self.prompts.append(request)
        first = True
        async for delta in super().generate(request):
            if request.logprobs:
                step = TokenLogprob(math.log(self.p), (math.log(self.p), math.log((1 - self.p) * 0.9)))
                delta.logprobs = [step] * len(delta.token_ids)
            if request.prompt_logprobs and first:
                delta.prompt_nll = word_nll(request.prompt, digit=6.0, word=0.3)
            first = False
            yield delta


@contextlib.asynccontextmanager
async def policy_stack(small_p=0.95, router_fields=None):
    spec = make_spec(models=[SMALL, LARGE], policies=POLICIES, router={"port": 0, **(router_fields or {})})
    engines = {"kv-small": ScoredEngine(spec.models[0], small_p), "kv-large": ScoredEngine(spec.models[1], 0.99)}
    async with fake_stack(spec, engines=engines, embed=hash_embed) as s:
        yield s.stub, engines


def request(model="kv-auto", prompt="a b c", tenant="acme", **kwargs):
    compression = kwargs.pop("compression", None)
    uncertainty = kwargs.pop("uncertainty", False)
    req = make_request(model, prompt, **{"max_tokens": 4, **kwargs})
    req.tenant, req.uncertainty = tenant, uncertainty
    if compression is not None:
        req.compression.CopyFrom(compression)
    return req


async def test_cascade_escalates_when_the_small_tier_is_unsure():
    async with policy_stack(small_p=0.4) as (stub, engines):
        reply = await stub.Generate(request())
    d = reply.report.decoding
    assert (list(d.tiers), d.answered_by, d.escalated) == (["kv-small", "kv-large"], "kv-large", True)
    assert reply.report.uncertainty.score < 0.3 and engines["kv-small"].calls == engines["kv-large"].calls == 1
    small, large = 0.1 * 3 / 1000 + 0.2 * 4 / 1000, 1.0 * 3 / 1000 + 2.0 * 4 / 1000
    assert d.cost_charged == pytest.approx(small + large)
    assert d.budget_left == pytest.approx(1.0 - small - large)


async def test_cascade_keeps_a_confident_small_answer():
    async with policy_stack(small_p=0.97) as (stub, engines):
        chunks = [c async for c in stub.GenerateStream(request())]
    d = chunks[-1].report.decoding
    assert (d.answered_by, d.escalated, engines["kv-large"].calls) == ("kv-small", False, 0)
    assert "".join(c.text for c in chunks) == " a b c a"
    assert 0 <= chunks[-1].report.uncertainty.score < 0.3


async def test_an_outcome_record_carries_the_charge_the_router_reported():
    spec = make_spec(models=[SMALL, LARGE], policies=POLICIES, router={"port": 0})
    async with fake_stack(spec, embed=hash_embed) as s:
        (record,) = await drive(s.channel, Plan([request(model="kv-small", request_id="r1")]))
    assert record.verdict is Verdict.OK
    assert record.charged == pytest.approx(0.1 * 3 / 1000 + 0.2 * 4 / 1000)


async def test_budget_that_cannot_pay_is_resource_exhausted():
    async with policy_stack() as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(request(prompt="word " * 20, tenant="tiny"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "tenant 'tiny' has 0.001 credits left; the cheapest plan (kv-small, 22 prompt tokens" in info.value.details()


async def test_budget_clamps_max_tokens_and_drops_the_large_tier():
    async with policy_stack() as (stub, engines):
        reply = await stub.Generate(request(prompt="a b", max_tokens=100, tenant="tiny"))
    d = reply.report.decoding
    assert list(d.tiers) == ["kv-small"] and d.max_tokens < 100
    assert engines["kv-small"].prompts[0].max_tokens == d.max_tokens
    assert d.cost_charged <= 0.001 and d.budget_left >= 0


async def test_tenant_comes_from_metadata_and_unknown_tenants_are_refused():
    async with policy_stack() as (stub, _):
        reply = await stub.Generate(request(tenant=""), metadata=(("x-shardline-tenant", "acme"),))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(request(tenant="nobody"))
    assert reply.report.decoding.tenant == "acme"
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "tenant 'nobody' is not configured; tenants: acme, tiny"


async def test_with_auth_the_token_decides_the_tenant(tmp_path):
    tokens = tmp_path / "tokens.env"
    tokens.write_text(f"acme={'a' * 20}\ntiny={'t' * 20}\n")
    async with policy_stack(router_fields={"auth": {"tokens_file": str(tokens)}}) as (stub, _):
        acme = (("authorization", f"Bearer {'a' * 20}"),)
        reply = await stub.Generate(request(tenant=""), metadata=acme + (("x-shardline-tenant", "tiny"),))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(request(tenant="tiny"), metadata=acme)
    assert reply.report.decoding.tenant == "acme"
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == "request names tenant 'tiny' but its token belongs to 'acme'"


async def test_spec_compression_shortens_long_prompts_and_reports_tokens():
    async with policy_stack() as (stub, engines):
        reply = await stub.Generate(request("kv-large", LONG))
    c = reply.report.compression
    assert (c.policy, c.skipped) == ("truncate_middle", "")
    assert c.original_prompt_tokens == len(LONG.split()) and c.sent_prompt_tokens <= c.original_prompt_tokens / 4
    sent = engines["kv-large"].prompts[0].prompt
    assert sent.endswith("Question : what is the code of amber ? Answer :")
    assert reply.usage.prompt_tokens == len(sent.split()) == c.sent_prompt_tokens


async def test_request_overrides_policy_and_self_information_scores_on_the_cheapest_tier():
    options = pb.CompressionOptions(policy="self_information", target_ratio=8.0)
    async with policy_stack() as (stub, engines):
        reply = await stub.Generate(request("kv-large", LONG, compression=options))
    scoring = engines["kv-small"].prompts[0]
    assert scoring.prompt_logprobs and scoring.max_tokens == 1 and scoring.prompt == LONG
    sent = engines["kv-large"].prompts[0].prompt
    assert "The code of amber is 4 8 2 1 ." in sent and reply.report.compression.policy == "self_information"


async def test_extractive_keeps_protected_spans():
    keep = LONG.index("Filler sentence number 7 .")
    options = pb.CompressionOptions(policy="extractive", protected=[pb.TextSpan(start=keep, end=keep + 26)])
    async with policy_stack() as (stub, engines):
        await stub.Generate(request("kv-large", LONG, compression=options))
    sent = engines["kv-large"].prompts[0].prompt
    assert "Filler sentence number 7 ." in sent and "The code of amber is 4 8 2 1 ." in sent


async def test_uncertainty_on_a_single_model_when_asked():
    async with policy_stack() as (stub, engines):
        plain = await stub.Generate(request("kv-small"))
        asked = await stub.Generate(request("kv-small", uncertainty=True))
    assert not plain.report.HasField("uncertainty") and engines["kv-small"].prompts[0].logprobs == 0
    assert 0 <= asked.report.uncertainty.score <= 1
    assert set(asked.report.uncertainty.components) == {
        "mean_nll",
        "low_quantile_prob",
        "min_margin",
        "min_window_prob",
    }


@pytest.mark.parametrize(
    "options, message",
    [
        (pb.CompressionOptions(policy="zip"), "compression policy 'zip' is unknown; known: none, truncate_middle"),
        (pb.CompressionOptions(target_ratio=0.5), r"compression target_ratio must be in [1, 64] (got 0.5)"),
        (
            pb.CompressionOptions(protected=[pb.TextSpan(start=2, end=99)]),
            "protected[0] is [2, 99); it must satisfy start <= end <= 5",
        ),
    ],
)
async def test_bad_compression_options_are_invalid(options, message):
    async with policy_stack() as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(request("kv-large", "a b c", compression=options))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in info.value.details()
