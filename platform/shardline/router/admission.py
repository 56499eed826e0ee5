"""Admission: turns a `GenerateRequest` proto into a checked `GenerationRequest`.

Pure: no I/O, so every rule is unit-tested alone. Every rejection is a typed
error whose message quotes the value and the limit. Token-level limits (prompt
longer than the model's context) are checked by the replica, which owns the
tokenizer; here we bound what is cheap to bound before anything leaves the router.
"""

from __future__ import annotations

import math
import uuid

from shardline.engine.protocol import GenerationRequest
from shardline.errors import InvalidArgument, NotFound
from shardline.spec.model import DeploymentSpec, RouterLimits
from shardline.v1 import inference_pb2 as pb

MAX_REQUEST_ID_CHARS = 128
MAX_TOP_K = 100_000
MAX_TEMPERATURE = 2.0


def admit(request: pb.GenerateRequest, spec: DeploymentSpec, timeout_s: float) -> GenerationRequest:
    """Validate `request` against `spec`; raise InvalidArgument / NotFound."""
    limits = spec.router.limits
    _check_model(request.model, spec)
    _check_prompt(request.prompt, limits)
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
