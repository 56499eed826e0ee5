"""Validation: every field of a `GenerateRequest` proto checked against the spec.

`admit` turns the request into a checked `GenerationRequest` (model, prompt,
sampling); `compression_options` and `tenant` check its policy fields. Both front
doors build the same proto, so both reject the same requests with the same messages.

Pure: no I/O, so every rule is unit-tested alone. Every rejection is a typed
error whose message quotes the value and the limit. Token-level limits (prompt
longer than the model's context) are checked by the replica, which owns the
tokenizer; here we bound what is cheap to bound before anything leaves the router.
"""

from __future__ import annotations

import math
import uuid

from shardline import wire
from shardline.errors import InvalidArgument, NotFound
from shardline.generation import GenerationRequest
from shardline.policies.compression import NONE, Options
from shardline.spec.deployment import DeploymentSpec, RouterLimits
from shardline.spec.policies import COMPRESSION_POLICIES, CompressionSpec
from shardline.v1 import inference_pb2 as pb

MAX_REQUEST_ID_CHARS = 128
MAX_TOP_K = 100_000
MAX_TEMPERATURE = 2.0
MAX_PROTECTED_SPANS = 256
MAX_TENANT_CHARS = 64
MAX_SESSION_BYTES = 256


def admit(request: pb.GenerateRequest, spec: DeploymentSpec, timeout_s: float, session: str = "") -> GenerationRequest:
    """Validate `request` against `spec`; raise InvalidArgument / NotFound."""
    limits = spec.router.limits
    _check_model(request.model, spec)
    _check_prompt(request.prompt, limits)
    _check_session(session)
    s = request.sampling
    return GenerationRequest(
        request_id=_request_id(request.request_id),
        prompt=request.prompt,
        max_tokens=_max_tokens(s, limits),
        temperature=_temperature(s),
        top_p=_top_p(s),
        top_k=_top_k(s),
        stop=_stop(s, limits),
        seed=s.seed if s.HasField("seed") else None,
        ignore_eos=s.ignore_eos,
        timeout_s=timeout_s,
        session=session,
    )


def _check_model(model: str, spec: DeploymentSpec) -> None:
    if not model:
        raise InvalidArgument("model is required; served models: " + _names(spec))
    if spec.model(model) is None and spec.policies.cascade(model) is None:
        raise NotFound(f"model {model!r} is not served; served models: {_names(spec)}")


def _names(spec: DeploymentSpec) -> str:
    return ", ".join([m.name for m in spec.models] + [c.name for c in spec.policies.cascades])


def _check_prompt(prompt: str, limits: RouterLimits) -> None:
    if not prompt:
        raise InvalidArgument("prompt is empty")
    size = len(prompt.encode("utf-8", errors="surrogatepass"))
    if size > limits.max_prompt_bytes:
        raise InvalidArgument(f"prompt is {size} bytes; max_prompt_bytes is {limits.max_prompt_bytes}")


def _check_session(session: str) -> None:
    size = len(session.encode("utf-8", errors="surrogatepass"))
    if size > MAX_SESSION_BYTES:
        raise InvalidArgument(f"session key ({wire.SESSION}) is {size} bytes; the limit is {MAX_SESSION_BYTES}")


def _request_id(value: str) -> str:
    if not value:
        return uuid.uuid4().hex
    if len(value) > MAX_REQUEST_ID_CHARS or not value.isprintable() or not value.isascii():
        raise InvalidArgument(
            f"request_id must be printable ASCII of at most {MAX_REQUEST_ID_CHARS} chars "
            f"(got {len(value)} chars: {value[:40]!r})"
        )
    return value


def _max_tokens(s: pb.SamplingParams, limits: RouterLimits) -> int:
    if not s.HasField("max_tokens"):
        return limits.default_max_tokens
    if s.max_tokens < 1:
        raise InvalidArgument(f"max_tokens must be at least 1 (got {s.max_tokens})")
    if s.max_tokens > limits.max_tokens:
        raise InvalidArgument(f"max_tokens is {s.max_tokens}; the limit is {limits.max_tokens}")
    return s.max_tokens


def _temperature(s: pb.SamplingParams) -> float:
    if not s.HasField("temperature"):
        return 1.0
    t = s.temperature
    if not math.isfinite(t) or not 0.0 <= t <= MAX_TEMPERATURE:
        raise InvalidArgument(f"temperature must be in [0, {MAX_TEMPERATURE}] (got {t})")
    return t


def _top_p(s: pb.SamplingParams) -> float:
    if not s.HasField("top_p"):
        return 1.0
    p = s.top_p
    if not math.isfinite(p) or not 0.0 < p <= 1.0:
        raise InvalidArgument(f"top_p must be in (0, 1] (got {p})")
    return p


def _top_k(s: pb.SamplingParams) -> int:
    if not s.HasField("top_k"):
        return 0
    if s.top_k > MAX_TOP_K:
        raise InvalidArgument(f"top_k is {s.top_k}; the limit is {MAX_TOP_K} (0 disables top-k)")
    return s.top_k


def _stop(s: pb.SamplingParams, limits: RouterLimits) -> tuple[str, ...]:
    stops = tuple(s.stop)
    if len(stops) > limits.max_stop_strings:
        raise InvalidArgument(f"{len(stops)} stop strings; max_stop_strings is {limits.max_stop_strings}")
    for i, stop in enumerate(stops):
        if not stop:
            raise InvalidArgument(f"stop[{i}] is empty")
        if len(stop) > limits.max_stop_string_chars:
            raise InvalidArgument(
                f"stop[{i}] is {len(stop)} chars; max_stop_string_chars is {limits.max_stop_string_chars}"
            )
    return tuple(dict.fromkeys(stops))  # duplicates are harmless; drop them


def compression_options(request: pb.GenerateRequest, spec: DeploymentSpec) -> Options:
    """The spec's compression for the requested model (a cascade's first tier), with
    the request's overrides applied."""
    configured = spec.model(_compressing_model(request.model, spec)).compression
    asked = request.compression if request.HasField("compression") else None
    if configured is None and (asked is None or not asked.policy):
        return Options(policy=NONE)
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
    if policy not in COMPRESSION_POLICIES:
        raise InvalidArgument(f"compression policy {policy!r} is unknown; known: {', '.join(COMPRESSION_POLICIES)}")
    ratio = asked.target_ratio if asked.HasField("target_ratio") else options.target_ratio
    if not math.isfinite(ratio) or not 1.0 <= ratio <= 64.0:
        raise InvalidArgument(f"compression target_ratio must be in [1, 64] (got {ratio})")
    return Options(
        policy,
        ratio,
        options.min_prompt_tokens,
        options.min_ratio,
        options.mmr_lambda,
        system_chars=_within("system_chars", asked.system_chars, prompt_chars),
        question_chars=_within("question_chars", asked.question_chars, prompt_chars)
        if asked.HasField("question_chars")
        else None,
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
