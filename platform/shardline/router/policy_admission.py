"""Admission of the policy fields of a request: compression options and tenant.

Pure, like admission.py: request proto + spec -> checked values, or a typed error
that quotes the value and the limit.
"""

from __future__ import annotations

import math

from shardline.errors import InvalidArgument
from shardline.policies.compression import POLICIES, Options
from shardline.spec.model import DeploymentSpec
from shardline.spec.policies import CompressionSpec
from shardline.v1 import inference_pb2 as pb

MAX_PROTECTED_SPANS = 256
MAX_TENANT_CHARS = 64


def compression_options(request: pb.GenerateRequest, spec: DeploymentSpec) -> Options:
    """The spec's compression for the requested model (a cascade's first tier), with
    the request's overrides applied."""
    configured = spec.model(_compressing_model(request.model, spec)).compression
    asked = request.compression if request.HasField("compression") else None
    if configured is None and (asked is None or not asked.policy):
        return Options(policy="none")
    base = configured or CompressionSpec()
    options = Options(base.policy, base.target_ratio, base.min_prompt_tokens, base.min_ratio, base.mmr_lambda)
    return _override(options, asked, len(request.prompt)) if asked is not None else options


def tenant(request: pb.GenerateRequest) -> str:
    name = request.tenant
    if len(name) > MAX_TENANT_CHARS or not name.isprintable():
        raise InvalidArgument(f"tenant must be printable and at most {MAX_TENANT_CHARS} chars (got {name[:40]!r})")
    return name


def _compressing_model(model: str, spec: DeploymentSpec) -> str:
    cascade = spec.policies.cascade(model)
    return cascade.tiers[0] if cascade else model


def _override(options: Options, asked: pb.CompressionOptions, prompt_chars: int) -> Options:
    policy = asked.policy or options.policy
    if policy not in POLICIES:
        raise InvalidArgument(f"compression policy {policy!r} is unknown; known: {', '.join(POLICIES)}")
    ratio = asked.target_ratio if asked.HasField("target_ratio") else options.target_ratio
    if not math.isfinite(ratio) or not 1.0 <= ratio <= 64.0:
        raise InvalidArgument(f"compression target_ratio must be in [1, 64] (got {ratio})")
    return Options(
        policy, ratio, options.min_prompt_tokens, options.min_ratio, options.mmr_lambda,
        system_chars=_within("system_chars", asked.system_chars, prompt_chars),
        question_chars=_within("question_chars", asked.question_chars, prompt_chars)
        if asked.HasField("question_chars") else None,
        protected=_spans(asked.protected, prompt_chars),
    )


def _within(name: str, value: int, prompt_chars: int) -> int:
    if value > prompt_chars:
        raise InvalidArgument(f"compression {name} is {value}; the prompt has {prompt_chars} chars")
    return value


def _spans(spans, prompt_chars: int) -> tuple[tuple[int, int], ...]:
    if len(spans) > MAX_PROTECTED_SPANS:
        raise InvalidArgument(f"{len(spans)} protected spans; the limit is {MAX_PROTECTED_SPANS}")
    out = []
    for i, span in enumerate(spans):
        if not span.start <= span.end <= prompt_chars:
            raise InvalidArgument(
                f"protected[{i}] is [{span.start}, {span.end}); it must satisfy start <= end <= {prompt_chars} "
                "(the prompt's length in chars)"
            )
        out.append((span.start, span.end))
    return tuple(out)
