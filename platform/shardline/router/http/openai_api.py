"""The OpenAI wire format: request bodies -> `GenerateRequest`, results -> JSON objects.

Pure (no I/O), like validation.py: the HTTP door (`http/server.py`) parses a body
here, runs the same `Pipeline` as gRPC and shapes what comes back here. Limits
(max_tokens, stop strings, prompt size, known models) stay in validation, so both
doors reject the same requests with the same messages.

Supported: one choice (`n` = 1), a string prompt, text chat messages. Fields we
cannot honour (logprobs, tools, penalties, ...) are rejected with a 400 naming
them rather than silently ignored. `user` is accepted and not used: it names the
caller's end user, while the tenant who pays is the bearer token's (or, without
auth, the `x-shardline-tenant` header's), exactly as on gRPC. Shardline's own
options and report ride in one extension object, `shardline`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shardline.errors import InvalidArgument
from shardline.generation import GenerationDelta
from shardline.router.report import RequestReport, policy_report
from shardline.v1 import inference_pb2 as pb

# OpenAI error `type` and HTTP status per typed error (RequestError.grpc_code).
HTTP_ERRORS: dict[str, tuple[int, str]] = {
    "INVALID_ARGUMENT": (400, "invalid_request_error"),
    "UNAUTHENTICATED": (401, "authentication_error"),
    "PERMISSION_DENIED": (403, "permission_error"),
    "NOT_FOUND": (404, "not_found_error"),
    "RESOURCE_EXHAUSTED": (429, "rate_limit_error"),
    "UNAVAILABLE": (503, "service_unavailable_error"),
    "DEADLINE_EXCEEDED": (504, "timeout_error"),
}
INTERNAL = (500, "server_error")


class ShardlineOptions(BaseModel):
    """The `shardline` extension object of a request (`extra_body` in the openai client)."""

    model_config = ConfigDict(extra="forbid")
    compression: dict[str, Any] | None = None
    """A `CompressionOptions` in its JSON form, e.g. {"policy": "extractive", "targetRatio": 4}."""
    uncertainty: bool = False
    """Score the answer's uncertainty (reported in the response's `shardline.report`)."""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Common(BaseModel):
    # Unknown fields are errors: a client asking for something we would ignore
    # (logprobs, tools, ...) must hear so.
    model_config = ConfigDict(extra="forbid")
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = Field(None, ge=0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, lt=2**64)
    ignore_eos: bool = False
    """vLLM's extension: generate past EOS, exactly max_tokens (benchmarks use it)."""
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    shardline: ShardlineOptions | None = None


class CompletionRequest(_Common):
    prompt: str


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(_Common):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class ParamError(InvalidArgument):
    """An invalid request field; `param` is its name in the OpenAI body."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def parse(kind: type[_Common], body: Any) -> _Common:
    """A checked request, or InvalidArgument naming the offending field (its `param`)."""
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    if kind is CompletionRequest and not isinstance(body.get("prompt", ""), str):
        raise ParamError("prompt must be one string; token-id prompts and batches are not supported", "prompt")
    try:
        return kind.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"])
        raise ParamError(f"{param}: {first['msg']} (got {_short(first.get('input'))})", param) from None


def generate_request(body: _Common, prompt: str, request_id: str) -> pb.GenerateRequest:
    max_tokens = getattr(body, "max_completion_tokens", None) or body.max_tokens
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    sampling = pb.SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        stop=stop,
        seed=body.seed,
        ignore_eos=body.ignore_eos,
    )
    request = pb.GenerateRequest(model=body.model, prompt=prompt, sampling=sampling, request_id=request_id)
    options = body.shardline
    if options is not None:
        request.uncertainty = options.uncertainty
        if options.compression is not None:
            _compression(request, options.compression)
    return request


def _compression(request: pb.GenerateRequest, value: dict[str, Any]) -> None:
    try:
        json_format.ParseDict(value, request.compression)
    except json_format.ParseError as exc:
        raise ParamError(f"shardline.compression: {exc}", "shardline.compression") from None


def error_body(message: str, code: str, param: str | None = None) -> tuple[int, dict]:
    """HTTP status and OpenAI error object for a typed error's gRPC code name."""
    status, kind = HTTP_ERRORS.get(code, INTERNAL)
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code.lower()}}


def usage(delta: GenerationDelta | None) -> dict:
    prompt, completion = (delta.prompt_tokens, delta.completion_tokens) if delta else (0, 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def extension(report: RequestReport) -> dict:
    """The response's `shardline` object: our request id and the policy report."""
    as_json = json_format.MessageToDict(policy_report(report), preserving_proto_field_name=True)
    return {"request_id": report.request_id, "report": as_json}


class Shape:
    """Builds the response objects of one completion or chat request."""

    def __init__(self, chat: bool, model: str, report: RequestReport):
        self.chat = chat
        self.model = model
        self.report = report
        self.created = int(time.time())

    @property
    def id(self) -> str:
        return ("chatcmpl-" if self.chat else "cmpl-") + self.report.request_id

    def whole(self, text: str, last: GenerationDelta | None) -> dict:
        finish = last.finish_reason if last else None
        choice = {"index": 0, "finish_reason": finish, "logprobs": None}
        choice.update({"message": {"role": "assistant", "content": text}} if self.chat else {"text": text})
        return self._object([choice], usage=usage(last), shardline=extension(self.report))

    def chunk(self, delta: GenerationDelta, first: bool) -> dict:
        choice = {"index": 0, "finish_reason": delta.finish_reason, "logprobs": None}
        if self.chat:
            choice["delta"] = {"role": "assistant", "content": delta.text} if first else {"content": delta.text}
        else:
            choice["text"] = delta.text
        extra = {"shardline": extension(self.report)} if delta.finish_reason is not None else {}
        return self._object([choice], chunk=True, **extra)

    def usage_chunk(self, last: GenerationDelta | None) -> dict:
        """The extra final chunk `stream_options.include_usage` asks for (no choices)."""
        return self._object([], chunk=True, usage=usage(last))

    def _object(self, choices: list[dict], chunk: bool = False, **extra: Any) -> dict:
        kind = "chat.completion" if self.chat else "text_completion"
        kind += ".chunk" if chunk and self.chat else ""
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
