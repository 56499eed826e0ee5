from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SamplingParams(_message.Message):
    __slots__ = ("max_tokens", "temperature", "top_p", "top_k", "stop", "seed", "ignore_eos")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    IGNORE_EOS_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    ignore_eos: bool
    def __init__(self, max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., ignore_eos: _Optional[bool] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "prompt", "sampling", "request_id", "compression", "tenant", "uncertainty")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    model: str
    prompt: str
    sampling: SamplingParams
    request_id: str
    compression: CompressionOptions
    tenant: str
    uncertainty: bool
    def __init__(self, model: _Optional[str] = ..., prompt: _Optional[str] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., request_id: _Optional[str] = ..., compression: _Optional[_Union[CompressionOptions, _Mapping]] = ..., tenant: _Optional[str] = ..., uncertainty: _Optional[bool] = ...) -> None: ...

class TextSpan(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class CompressionOptions(_message.Message):
    __slots__ = ("policy", "target_ratio", "system_chars", "question_chars", "protected")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TARGET_RATIO_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_CHARS_FIELD_NUMBER: _ClassVar[int]
    QUESTION_CHARS_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_FIELD_NUMBER: _ClassVar[int]
    policy: str
    target_ratio: float
    system_chars: int
    question_chars: int
    protected: _containers.RepeatedCompositeFieldContainer[TextSpan]
    def __init__(self, policy: _Optional[str] = ..., target_ratio: _Optional[float] = ..., system_chars: _Optional[int] = ..., question_chars: _Optional[int] = ..., protected: _Optional[_Iterable[_Union[TextSpan, _Mapping]]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ...) -> None: ...

class GenerateChunk(_message.Message):
    __slots__ = ("request_id", "text", "token_ids", "finish_reason", "usage", "report")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    finish_reason: str
    usage: Usage
    report: PolicyReport
    def __init__(self, request_id: _Optional[str] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., report: _Optional[_Union[PolicyReport, _Mapping]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("request_id", "text", "token_ids", "finish_reason", "usage", "report")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    finish_reason: str
    usage: Usage
    report: PolicyReport
    def __init__(self, request_id: _Optional[str] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., report: _Optional[_Union[PolicyReport, _Mapping]] = ...) -> None: ...

class CompressionReport(_message.Message):
    __slots__ = ("policy", "original_prompt_tokens", "sent_prompt_tokens", "skipped")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SENT_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    policy: str
    original_prompt_tokens: int
    sent_prompt_tokens: int
    skipped: str
    def __init__(self, policy: _Optional[str] = ..., original_prompt_tokens: _Optional[int] = ..., sent_prompt_tokens: _Optional[int] = ..., skipped: _Optional[str] = ...) -> None: ...

class DecodingReport(_message.Message):
    __slots__ = ("tiers", "max_tokens", "escalate_above", "answered_by", "escalated", "tenant", "cost_charged", "budget_left")
    TIERS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESCALATE_ABOVE_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    ESCALATED_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    COST_CHARGED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LEFT_FIELD_NUMBER: _ClassVar[int]
    tiers: _containers.RepeatedScalarFieldContainer[str]
    max_tokens: int
    escalate_above: float
    answered_by: str
    escalated: bool
    tenant: str
    cost_charged: float
    budget_left: float
    def __init__(self, tiers: _Optional[_Iterable[str]] = ..., max_tokens: _Optional[int] = ..., escalate_above: _Optional[float] = ..., answered_by: _Optional[str] = ..., escalated: _Optional[bool] = ..., tenant: _Optional[str] = ..., cost_charged: _Optional[float] = ..., budget_left: _Optional[float] = ...) -> None: ...

class Uncertainty(_message.Message):
    __slots__ = ("score", "components")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    score: float
    components: _containers.ScalarMap[str, float]
    def __init__(self, score: _Optional[float] = ..., components: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PolicyReport(_message.Message):
    __slots__ = ("compression", "decoding", "uncertainty", "recovery")
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    DECODING_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_FIELD_NUMBER: _ClassVar[int]
    compression: CompressionReport
    decoding: DecodingReport
    uncertainty: Uncertainty
    recovery: RecoveryReport
    def __init__(self, compression: _Optional[_Union[CompressionReport, _Mapping]] = ..., decoding: _Optional[_Union[DecodingReport, _Mapping]] = ..., uncertainty: _Optional[_Union[Uncertainty, _Mapping]] = ..., recovery: _Optional[_Union[RecoveryReport, _Mapping]] = ...) -> None: ...

class RecoveryReport(_message.Message):
    __slots__ = ("retries", "resumed_tokens")
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    RESUMED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    retries: int
    resumed_tokens: int
    def __init__(self, retries: _Optional[int] = ..., resumed_tokens: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "max_model_len", "tensor_parallel_size", "pipeline_parallel_size", "expert_parallel_size", "ready_replicas", "reported", "data_parallel_size", "expert_parallel", "quantization", "workers", "experts", "experts_per_rank", "int8_weights")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_LEN_FIELD_NUMBER: _ClassVar[int]
    TENSOR_PARALLEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_PARALLEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    EXPERT_PARALLEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    READY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    DATA_PARALLEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    EXPERT_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    EXPERTS_FIELD_NUMBER: _ClassVar[int]
    EXPERTS_PER_RANK_FIELD_NUMBER: _ClassVar[int]
    INT8_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    max_model_len: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    expert_parallel_size: int
    ready_replicas: int
    reported: bool
    data_parallel_size: int
    expert_parallel: bool
    quantization: str
    workers: int
    experts: int
    experts_per_rank: _containers.RepeatedScalarFieldContainer[int]
    int8_weights: int
    def __init__(self, name: _Optional[str] = ..., max_model_len: _Optional[int] = ..., tensor_parallel_size: _Optional[int] = ..., pipeline_parallel_size: _Optional[int] = ..., expert_parallel_size: _Optional[int] = ..., ready_replicas: _Optional[int] = ..., reported: _Optional[bool] = ..., data_parallel_size: _Optional[int] = ..., expert_parallel: _Optional[bool] = ..., quantization: _Optional[str] = ..., workers: _Optional[int] = ..., experts: _Optional[int] = ..., experts_per_rank: _Optional[_Iterable[int]] = ..., int8_weights: _Optional[int] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
