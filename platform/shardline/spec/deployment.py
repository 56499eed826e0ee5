"""DeploymentSpec: the one typed, validated configuration of a Shardline deployment.

Every door (CLI, `ray job submit`, Helm) builds one of these; nothing else reads raw
YAML. Models are strict (no type coercion), frozen, and reject unknown keys.
Cross-field errors quote the values involved and the limit they broke.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from shardline.spec.autoscaling import AutoscalingSpec
from shardline.spec.base import StrictModel
from shardline.spec.engine_args import check_engine_args
from shardline.spec.policies import CompressionSpec, LatencyProfile, PoliciesSpec, TierCost, UncertaintyMix
from shardline.spec.routing import RoutingSpec, engine_block_tokens


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

    min: int = Field(1, ge=0, le=1024)
    """Replicas kept running at all times. 0 scales to zero when idle: the router holds
    the next request while the first replica starts (`autoscaling.hold_timeout_s`)."""
    max: int = Field(1, ge=1, le=1024)
    """Upper bound for autoscaling; equal to `min` disables it."""
    target_ongoing_requests: float = Field(16.0, gt=0, le=10_000)
    """Autoscaling signal: requests in flight per replica (Serve's count, the requests
    its handles still hold included); above it the model scales up."""
    max_ongoing_requests: int = Field(256, ge=1, le=100_000)
    """Requests one replica serves at once (its engine batch); beyond it they queue."""
    max_queued_requests: int = Field(16, ge=0, le=100_000)
    """Requests per ready replica allowed to wait for a free slot. The router admits at
    most ready replicas x (max_ongoing_requests + max_queued_requests) per model
    (divided among router replicas) and rejects the rest at once with
    RESOURCE_EXHAUSTED and retry advice, instead of piling them into a queue."""
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    """How the count moves between `min` and `max` (unused when they are equal)."""

    @property
    def autoscaled(self) -> bool:
        return self.min != self.max

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
    gpu: float = Field(0.0, ge=0, le=1)
    """0: the engine runs on CPU (vLLM CPU). 1: on GPU, each worker on the one GPU its
    bundle reserved (spec/placement.py). This decides the engine's device; what the
    replica process happens to see does not."""
    custom: dict[str, float] = Field(default_factory=dict)
    """Extra Ray resources, e.g. `{"node:pool-a": 0.01}` to pin replicas to nodes."""

    @field_validator("gpu")
    @classmethod
    def _whole_gpu(cls, value: float) -> float:
        if value not in (0, 1):
            raise ValueError(
                f"gpu ({value:g}) must be 0 or 1: each engine worker is one vLLM worker on one whole GPU "
                "(vLLM's Ray executor refuses a bundle with more than one GPU and asks one GPU per worker)"
            )
        return value

    def bundle(self) -> dict[str, float]:
        bundle = {"CPU": self.cpu, **self.custom}
        if self.gpu:
            bundle["GPU"] = self.gpu
        return bundle


class Integrity(StrictModel):
    """Signed-manifest verification, done by each replica before the engine loads weights."""

    public_key: str
    """Ed25519 public key, base64 of the raw 32 bytes (`shardline keygen` prints it).
    The model directory must hold a manifest signed by the matching private key
    (`shardline sign`); any extra, missing or modified file refuses the replica."""

    @field_validator("public_key")
    @classmethod
    def _parses(cls, value: str) -> str:
        from shardline.security.integrity import parse_public_key

        parse_public_key(value)
        return value.strip()


class Kernels(StrictModel):
    """Which implementation runs each of our ops (kernels/shardline_kernels)."""

    moe: Literal["vllm", "shardline"] = "vllm"
    """Fused MoE experts. `shardline`: our expert-parallel kernel, which honours
    vLLM's expert map (required on CPU when `parallelism.expert` > 1: vLLM-CPU's own
    MoE kernel crashes under expert parallelism). CPU only: refused with
    `resources.gpu` 1, where vLLM's CUDA experts (which honour the expert map) run."""


class HealthSpec(StrictModel):
    """How a model's replicas are checked, and what counts as a replica that stopped serving."""

    period_s: float = Field(10.0, ge=0.2, le=600)
    """Seconds between health checks of each replica (Ray Serve's health_check_period_s).
    Each check is a real 1-token generation on the engine, not a ping."""
    probe_timeout_s: float = Field(10.0, gt=0, le=3600)
    """How long that 1-token generation may take. Past it, a replica whose engine
    produced no token for any request during the probe is stalled: it fails its
    requests over to other replicas and leaves. A slow probe on an engine that is
    still producing tokens, or still computing without one (its processes used CPU
    meanwhile: a long prompt's prefill is one step of many seconds on a CPU), passes:
    busy, not stuck."""
    timeout_s: float = Field(60.0, gt=0, le=3600)
    """Ray Serve's health_check_timeout_s: a check that has not answered by then
    fails (a replica process that is itself wedged). Must exceed `probe_timeout_s`,
    so the probe's own verdict arrives first."""
    stall_timeout_s: float | None = Field(None, gt=0, le=3600)
    """Router side: a replica call that yields no token for this long (the first
    included) counts as a lost replica, and the router retries or resumes the
    request on another. Unset: off. Set it above the slowest first token a long
    prompt may take on a busy replica."""

    @model_validator(mode="after")
    def _probe_answers_first(self) -> HealthSpec:
        if self.timeout_s <= self.probe_timeout_s:
            raise ValueError(
                f"timeout_s ({self.timeout_s:g}) must be greater than probe_timeout_s "
                f"({self.probe_timeout_s:g}): Serve would give up on a check before its probe does"
            )
        return self


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
    router, client) at the cost of coarser inter-token timing. A replica uses the
    whole window from 16 streams in flight and a proportional part below that
    (serve/coalesce.py), so a lightly loaded one streams token by token; see
    docs/performance.md."""
    integrity: Integrity | None = None
    """When set, replicas refuse a model directory that does not match its signed
    manifest, and load safetensors weights only."""
    engine_args: dict[str, Any] = Field(default_factory=dict)
    """Extra `vllm.EngineArgs` fields. Keys are checked against vLLM's EngineArgs;
    keys the spec owns (model, dtype, parallel sizes, ...) are refused."""
    compression: CompressionSpec | None = None
    """Prompt compression in the router; None sends prompts unchanged."""
    cost: TierCost | None = None
    """Price of this tier; None: free (never charged to a tenant)."""
    latency: LatencyProfile | None = None
    uncertainty: UncertaintyMix | None = None
    """This model's uncertainty score, fitted to its own errors; None: the plain mean
    of the components."""
    health: HealthSpec = Field(default_factory=HealthSpec)
    """Replica health checks: period, probe and Serve timeouts, router stall guard."""
    routing: RoutingSpec = Field(default_factory=RoutingSpec)
    """Which replica gets each request (default: Serve's power of two choices)."""

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        return os.path.abspath(os.path.expanduser(value))

    @field_validator("engine_args")
    @classmethod
    def _known_engine_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_engine_args(value)
        return value

    @model_validator(mode="after")
    def _signed_models_load_safetensors(self) -> ModelSpec:
        load_format = self.engine_args.get("load_format", "safetensors")
        if self.integrity and load_format != "safetensors":
            raise ValueError(
                f"engine_args.load_format ({load_format!r}) must be 'safetensors' when integrity "
                "is set: only the verified safetensors files may be loaded"
            )
        return self

    @model_validator(mode="after")
    def _spill_needs_raw_logits(self) -> ModelSpec:
        mode = self.engine_args.get("logprobs_mode", "raw_logprobs")
        if self.uncertainty and "max_spill" in self.uncertainty.weights and mode != "raw_logits":
            raise ValueError(
                f"uncertainty weighs max_spill, which needs engine_args.logprobs_mode 'raw_logits' (got {mode!r})"
            )
        return self

    @model_validator(mode="after")
    def _shardline_moe_on_cpu_only(self) -> ModelSpec:
        # Our plugin replaces vLLM-CPU's experts only; on GPU the choice would be a
        # silent no-op. The Triton kernel is checked on GPU by `make gpu-check`.
        if self.kernels.moe == "shardline" and self.resources.gpu > 0:
            raise ValueError(
                f"kernels.moe ({self.kernels.moe!r}) runs on CPU only, but resources.gpu is "
                f"{self.resources.gpu:g}: on GPU our kernel is not wired into vLLM's fused-MoE "
                "experts (vLLM's own CUDA experts honour the expert map); set kernels.moe: vllm"
            )
        return self

    @model_validator(mode="after")
    def _routing_blocks_hold_engine_blocks(self) -> ModelSpec:
        engine = self.engine_block_tokens
        if self.routing.block_tokens is not None and self.routing.block_tokens < engine:
            raise ValueError(
                f"routing.block_tokens ({self.routing.block_tokens}) is smaller than the engine's block size "
                f"({engine}): vLLM reuses only whole blocks, so smaller ones predict hits it cannot make"
            )
        return self

    @property
    def engine_block_tokens(self) -> int:
        return engine_block_tokens(self.engine_args, self.resources.gpu > 0)

    @property
    def routing_block_tokens(self) -> int:
        """Tokens per block the router hashes (routing.block_tokens, else the engine's)."""
        return self.routing.block_tokens or self.engine_block_tokens


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
    max_metadata_bytes: int = Field(16_384, ge=1024, le=1_048_576)
    """Largest request metadata a gRPC call may carry (all headers, as gRPC counts
    them); beyond it: RESOURCE_EXHAUSTED before any handler runs. On the HTTP door,
    the largest header field and request line (beyond it: 400)."""
    max_streams_per_connection: int = Field(1024, ge=1, le=1_000_000)
    """Concurrent calls one gRPC connection may have open (HTTP/2 MAX_CONCURRENT_STREAMS),
    so one client cannot take every slot. Calls beyond it are refused with UNAVAILABLE
    (REFUSED_STREAM: nothing ran, safe to retry). At least max_concurrent_requests
    keeps RESOURCE_EXHAUSTED the answer to one client's overload."""

    @model_validator(mode="after")
    def _default_within_cap(self) -> RouterLimits:
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(
                f"default_max_tokens ({self.default_max_tokens}) is greater than max_tokens ({self.max_tokens})"
            )
        return self


class RouterAuth(StrictModel):
    """Bearer-token authentication on every router RPC, with per-tenant rate limits."""

    tokens_file: str = Field(min_length=1)
    """File of `tenant=token` lines (e.g. a mounted Kubernetes Secret), read by the
    router when it starts. Tokens never appear in the spec."""
    exempt: tuple[Literal["health", "reflection"], ...] = Field(("health",), strict=False)
    """Services answered without a token. Health by default, so load balancers and
    Kubernetes probes can check readiness."""
    requests_per_s: float | None = Field(None, gt=0, le=1_000_000)
    """Sustained requests per second per tenant; unset: unlimited."""
    burst: int = Field(20, ge=1, le=1_000_000)
    """Requests a tenant may send at once before `requests_per_s` applies."""

    @field_validator("tokens_file")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return os.path.abspath(os.path.expanduser(value))


class RouterTLS(StrictModel):
    """TLS for the router's port; mutual TLS when `client_ca_file` is set."""

    cert_file: str = Field(min_length=1)
    """PEM certificate chain the router presents."""
    key_file: str = Field(min_length=1)
    """PEM private key of that certificate (a mounted Secret)."""
    client_ca_file: str | None = None
    """PEM CA bundle; when set, clients must present a certificate it signed."""

    @field_validator("cert_file", "key_file", "client_ca_file")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return value and os.path.abspath(os.path.expanduser(value))


class RouterRetry(StrictModel):
    """What the router does when the replica serving a request dies (or its engine does)."""

    attempts: int = Field(3, ge=1, le=10)
    """Replica calls per request, the first included; 1 turns retries off."""
    resume: bool = True
    """Resume a stream that already sent tokens on another replica (the prompt plus
    the tokens sent, so the client sees one continuous stream). False: such a stream
    ends ABORTED, saying how many tokens were sent."""
    backoff_s: float = Field(0.05, ge=0, le=10)
    """Wait before the first retry, doubled for each further one (within the deadline)."""


class RouterSpec(StrictModel):
    """The gRPC front door."""

    host: str = "0.0.0.0"
    port: int = Field(50051, ge=0, le=65535)
    """TCP port; 0 picks a free one (tests)."""
    http_port: int | None = Field(None, ge=0, le=65535)
    """Port of the OpenAI-compatible HTTP API (`/v1/completions`, ...) on `host`, beside
    gRPC; unset: no HTTP. 0 picks a free one. Same auth, TLS, limits and policies."""
    replicas: int = Field(1, ge=1, le=64)
    """Router replicas; on one node they share the port (SO_REUSEPORT)."""
    cpu: float = Field(1.0, gt=0, le=64)
    """Logical CPUs reserved for each router replica."""
    reflection: bool = True
    """Serve gRPC server reflection, so grpcurl works without proto files."""
    health_period_s: float = Field(2.0, gt=0, le=600)
    """How often the router re-checks replica readiness for grpc.health.v1."""
    limits: RouterLimits = Field(default_factory=RouterLimits)
    retry: RouterRetry = Field(default_factory=RouterRetry)
    auth: RouterAuth | None = None
    """Unset: no authentication (local use only)."""
    tls: RouterTLS | None = None
    """Unset: plaintext gRPC."""
    custom: dict[str, float] = Field(default_factory=dict)
    """Extra Ray resources each router replica needs, e.g. `{"shardline-router": 1}`
    so routers land only on nodes that advertise it (the Helm chart's router pods,
    or one node of a multi-node cluster)."""


class RolloutSpec(StrictModel):
    """How replicas stop and are replaced: `shardline down`, SIGTERM of `shardline up`,
    and re-deploying a changed spec (a rolling update)."""

    drain_timeout_s: float = Field(30.0, gt=0, le=3600)
    """How long a stopping router keeps its live streams going (it reports NOT_SERVING
    and refuses new calls at once), and how long a stopping engine replica has to
    finish the requests it holds. Streams still running after it are cut."""
    surge_percent: int = Field(100, ge=0, le=100)
    """Extra replicas a rolling update may start, as a percentage of each deployment's
    replica count (rounded up): the new replicas start while the old ones serve, and
    an old one stops only once its replacement is ready. It needs room for them (CPUs,
    GPUs, Ray resources); without room the update waits and the old version keeps
    serving. 0 stops old replicas first: no extra room, but fewer replicas meanwhile,
    and a deployment of one replica (the router by default) is gone until the new one
    starts."""


class TelemetrySpec(StrictModel):
    """Traces (OpenTelemetry) and metrics (Prometheus) of every process on the path."""

    exporter: Literal["file", "otlp-grpc", "otlp-http", "off"] = "file"
    """Where spans go: `file` (a local span store read by `shardline trace`; spans
    stay on the node that made them), an OTLP collector over gRPC or HTTP (the
    multi-node path), or `off` (no tracing)."""
    otlp_endpoint: str | None = Field(None, min_length=1)
    """Collector address for the `otlp-*` exporters, e.g. `http://collector:4317`
    (gRPC) or `http://collector:4318/v1/traces` (HTTP)."""
    trace_dir: str = Field(".cache/shardline/traces", validate_default=True)
    """The `file` exporter's directory. Relative paths resolve like `models[].path`."""
    record_content: bool = False
    """Record prompt and completion text on spans. Off: they may hold personal data."""
    metrics: bool = True
    """Serve Prometheus metrics from the router and every replica."""
    service_name: str = Field("shardline", min_length=1, max_length=128)
    """`service.name` of the spans the router and the replicas emit (the Helm chart sets
    it from `otel.serviceName`). Which process made a span is `shardline.process.role`;
    pod, node and namespace come from OTEL_RESOURCE_ATTRIBUTES, which the chart sets."""
    metrics_port: int = Field(0, ge=0, le=65535)
    """The router's Prometheus port; 0 picks a free one (`shardline status` shows it).
    Fixed, it is what a scraper is pointed at (the Helm chart's ServiceMonitor); then
    only one router replica fits on a node (the chart puts each on its own pod)."""
    replica_metrics_port: int = Field(0, ge=0, le=65535)
    """The first Prometheus port of the engine replicas on a node; 0: each replica picks
    a free port (`LLMServer.metrics_endpoint()` tells which). Fixed, a replica binds the
    first free port of `replica_metrics_port` .. `+ replica_metrics_ports - 1`: several
    replicas can share a node, so the first one started there gets the base port, the
    next one base + 1, and so on (the chart runs one replica per pod: always the base)."""
    replica_metrics_ports: int = Field(8, ge=1, le=1024)
    """How many consecutive ports from `replica_metrics_port` the replicas of one node may
    use. A replica that finds all of them taken fails to start, with a message saying so."""

    @field_validator("trace_dir")
    @classmethod
    def _absolute_dir(cls, value: str) -> str:
        return os.path.abspath(os.path.expanduser(value))

    @model_validator(mode="after")
    def _metrics_ports_apart(self) -> TelemetrySpec:
        base, count = self.replica_metrics_port, self.replica_metrics_ports
        if base and base + count - 1 > 65535:
            raise ValueError(f"replica_metrics_port ({base}) + replica_metrics_ports ({count}) passes port 65535")
        if base and base <= self.metrics_port < base + count:
            raise ValueError(
                f"metrics_port ({self.metrics_port}) is inside the replicas' ports "
                f"{base}..{base + count - 1} (replica_metrics_port, replica_metrics_ports)"
            )
        return self

    @model_validator(mode="after")
    def _endpoint_for_otlp(self) -> TelemetrySpec:
        if self.exporter.startswith("otlp") and not self.otlp_endpoint:
            raise ValueError(f"exporter {self.exporter!r} needs otlp_endpoint (the collector's address)")
        return self

    @property
    def tracing(self) -> bool:
        return self.exporter != "off"


class DeploymentSpec(StrictModel):
    """A whole Shardline deployment: the models and the router in front of them."""

    name: str = Field("shardline", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    """Ray Serve application name."""
    models: tuple[ModelSpec, ...] = Field(min_length=1, max_length=64, strict=False)
    router: RouterSpec = Field(default_factory=RouterSpec)
    policies: PoliciesSpec = Field(default_factory=PoliciesSpec)
    telemetry: TelemetrySpec = Field(default_factory=TelemetrySpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)

    @model_validator(mode="after")
    def _unique_model_names(self) -> DeploymentSpec:
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _cascades_name_served_models(self) -> DeploymentSpec:
        names = {m.name for m in self.models}
        for c in self.policies.cascades:
            if c.name in names:
                raise ValueError(f"cascade {c.name!r} has the name of a served model")
            unknown = [t for t in c.tiers if t not in names]
            if unknown:
                raise ValueError(f"cascade {c.name!r} names unserved models: {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _hold_within_deadline(self) -> DeploymentSpec:
        cap = self.router.limits.default_deadline_s
        for m in self.models:
            hold = m.replicas.autoscaling.hold_timeout_s
            if m.replicas.min == 0 and hold >= cap:
                raise ValueError(
                    f"model {m.name!r}: replicas.autoscaling.hold_timeout_s ({hold:g}) must be less than "
                    f"router.limits.default_deadline_s ({cap:g}), which caps every request's deadline: "
                    "a held request would pass its deadline first"
                )
        return self

    @model_validator(mode="after")
    def _tracing_keeps_engine_stats(self) -> DeploymentSpec:
        for m in self.models:
            if self.telemetry.tracing and m.engine_args.get("disable_log_stats"):
                raise ValueError(
                    f"model {m.name!r} sets engine_args.disable_log_stats, but telemetry.exporter is "
                    f"{self.telemetry.exporter!r}: vLLM's tracing crashes without its stats (vllm#25352); "
                    "drop disable_log_stats or set telemetry.exporter to off"
                )
        return self

    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)
