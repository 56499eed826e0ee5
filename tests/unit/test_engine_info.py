"""The engine's own report (vllm_engine.engine_info): from vLLM's resolved config and
what each worker answered, never from the spec. vLLM's config and the workers'
answers are faked here; tests/integration reads them from real engines."""

import os
from types import SimpleNamespace

from shardline.engine.vllm_engine import engine_info, engine_kwargs, worker_processes
from shardline_kernels import report


def vllm_config(tp=1, pp=1, dp=1, ep=False, quantization=None, max_model_len=256):
    parallel = SimpleNamespace(
        tensor_parallel_size=tp, pipeline_parallel_size=pp, data_parallel_size=dp, enable_expert_parallel=ep
    )
    return SimpleNamespace(
        parallel_config=parallel, model_config=SimpleNamespace(quantization=quantization, max_model_len=max_model_len)
    )


def worker(pid, experts=(), int8=0):
    return {"pid": pid, "rank": 0, "tp_rank": 0, "pp_rank": 0, "experts": list(experts), "int8_weights": int8}


def moe(held, total, ep_size):
    return {"held": held, "mapped": held, "total": total, "ep_size": ep_size}


def test_tensor_parallel_two_reports_two_live_workers():
    info = engine_info("m", vllm_config(tp=2), [worker(11), worker(12)], tree={11, 12})
    assert (info.tensor_parallel_size, info.pipeline_parallel_size, info.workers) == (2, 1, 2)
    assert info.worker_pids == (11, 12) and info.max_model_len == 256


def test_a_worker_outside_the_engines_process_tree_is_not_counted():
    info = engine_info("m", vllm_config(tp=2), [worker(11), worker(12)], tree={11})
    assert info.workers == 1


def test_ray_workers_count_by_their_answers():
    info = engine_info("m", vllm_config(tp=2), [worker(11), worker(12)], tree=None)
    assert info.workers == 2


def test_expert_parallel_reports_the_experts_each_rank_holds():
    reports = [worker(1, [moe(2, 4, 2), moe(2, 4, 2)]), worker(2, [moe(2, 4, 2), moe(2, 4, 2)])]
    info = engine_info("m", vllm_config(tp=2, ep=True), reports, tree={1, 2})
    assert (info.expert_parallel, info.expert_parallel_size, info.experts, info.experts_per_rank) == (
        True,
        2,
        4,
        (2, 2),
    )


def test_expert_parallel_asked_but_not_run_shows_as_such():
    # TP=2 without EP: every rank holds a slice of all 4 experts.
    reports = [worker(1, [moe(4, 4, 1)]), worker(2, [moe(4, 4, 1)])]
    info = engine_info("m", vllm_config(tp=2, ep=False), reports, tree={1, 2})
    assert (info.expert_parallel, info.expert_parallel_size, info.experts_per_rank) == (False, 1, (4, 4))


def test_a_dense_model_has_no_experts_and_quantization_comes_from_vllm():
    info = engine_info("m", vllm_config(quantization="shardline-int8"), [worker(1, int8=14)], tree={1})
    assert (info.experts, info.experts_per_rank, info.expert_parallel_size) == (0, (), 1)
    assert (info.quantization, info.int8_weights) == ("shardline-int8", 14)
    assert engine_info("m", vllm_config(), [worker(1)], tree={1}).quantization == ""


def test_an_engine_core_without_worker_children_runs_its_worker_itself():
    assert worker_processes([os.getpid()]) == {os.getpid()}
    assert worker_processes([2**22 + 12345]) == set()  # gone


def test_every_engine_loads_our_worker_report():
    from builders import make_spec

    assert engine_kwargs(make_spec().models[0])["worker_extension_cls"] == report.EXTENSION
