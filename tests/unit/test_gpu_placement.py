"""GPU placement, right by construction: every engine worker (TP=1 included) runs in a
bundle that holds its own GPU, and the device comes from the spec, not from what the
replica process sees.

No GPU here: vLLM's own placement steps (RayExecutorV2's check of the placement group
and its choice of each rank's bundle, vLLM 0.32) run against a fake CUDA platform and
a fake Ray node that hands each bundle's GPU to the actor scheduled in it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from builders import make_spec
from shardline.engine.gpu_env import check_platform, gpu_worker_env
from shardline.engine.vllm_engine import VLLMEngine, engine_kwargs
from shardline.errors import EngineFailure
from shardline.serve.app import llm_deployment
from shardline.spec.placement import device, placement_bundles

NODE = "node-a"
PARALLELISM = {
    "TP=1": {"tensor": 1},
    "TP=2": {"tensor": 2},
    "PP=2": {"pipeline": 2},
    "TP=2xPP=2": {"tensor": 2, "pipeline": 2},
}


class FakeCudaPlatform:
    device_name = "cuda"
    ray_device_key = "GPU"
    ray_noset_device_env_vars = ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_cpu(self):
        return False

    def is_cuda(self):
        return True

    def is_rocm(self):
        return False

    def is_xpu(self):
        return False

    def device_count(self):
        return 8


class FakeCpuPlatform(FakeCudaPlatform):
    device_name = "cpu"
    ray_device_key = ""

    def is_cpu(self):
        return True

    def is_cuda(self):
        return False


@dataclass
class FakeNode:
    """One Ray node with 8 GPUs: a placement group reserves whole GPUs per bundle, and
    an actor scheduled into a bundle gets that bundle's GPUs (what Ray does)."""

    free_gpus: list[int] = field(default_factory=lambda: list(range(8)))
    bundle_gpus: list[list[int]] = field(default_factory=list)

    def reserve(self, bundles: list[dict[str, float]]) -> SimpleNamespace:
        for bundle in bundles:
            count = int(bundle.get("GPU", 0))
            self.bundle_gpus.append([self.free_gpus.pop(0) for _ in range(count)])
        return SimpleNamespace(id="pg-1", bundle_specs=bundles)

    def schedule(self, bundle_index: int, num_gpus: float, num_cpus: float, group) -> list[int]:
        bundle = group.bundle_specs[bundle_index]
        assert num_gpus <= bundle.get("GPU", 0) and num_cpus <= bundle["CPU"], (bundle, num_gpus, num_cpus)
        return self.bundle_gpus[bundle_index][: int(num_gpus)]

    def table(self, group) -> dict:
        bundles = dict(enumerate(group.bundle_specs))
        return {"bundles_to_node_id": dict.fromkeys(bundles, NODE), "bundles": bundles}


@pytest.fixture
def cuda(monkeypatch):
    """vLLM sees a CUDA platform; Ray is a fake one-node cluster; the replica process sees no GPU."""
    import ray
    import torch
    import vllm.platforms
    import vllm.v1.engine.async_llm  # noqa: F401  (imported on the real platform: it loads its kernels)
    from vllm.plugins import load_general_plugins
    from vllm.v1.executor import ray_executor_v2, ray_utils

    load_general_plugins()  # ours imports vLLM's layers, which load the platform's kernels: once, here

    platform, node = FakeCudaPlatform(), FakeNode()
    monkeypatch.setattr(vllm.platforms, "_current_platform", platform)
    monkeypatch.setattr(ray_executor_v2, "current_platform", platform)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: NODE))
    monkeypatch.setattr(ray, "nodes", lambda: [{"NodeID": NODE, "NodeManagerAddress": "10.0.0.1", "Alive": True}])
    monkeypatch.setattr(ray_utils, "placement_group_table", node.table)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("VLLM_RAY_BUNDLE_INDICES", "VLLM_RAY_PER_WORKER_GPUS"):
        monkeypatch.setenv(name, "")  # restored (unset) after the test
    return node


def workers_gpus(model, node: FakeNode, monkeypatch) -> tuple[list[int], list[list[int]]]:
    """What vLLM's RayExecutorV2 does with our placement group, up to scheduling its
    worker actors: (each rank's bundle, the GPUs Ray gives each rank's actor)."""
    from vllm.v1.executor import ray_utils
    from vllm.v1.executor.ray_executor_v2 import RayExecutorV2

    for name, value in gpu_worker_env(model).items():
        monkeypatch.setenv(name, value)
    group = node.reserve(placement_bundles(model))
    parallel = SimpleNamespace(
        placement_group=group,
        world_size=model.parallelism.world_size,
        tensor_parallel_size=model.parallelism.tensor,
    )
    ray_utils.initialize_ray_cluster(parallel, require_gpu_on_driver=False)  # vLLM's check of the group
    indices = [int(i) for i in os.environ["VLLM_RAY_BUNDLE_INDICES"].split(",")]
    ranks = ray_utils.get_bundles_for_indices(group, indices, parallel.world_size)
    resources = RayExecutorV2._get_actor_resource_kwargs()
    bundles = [bundle for bundle, _, _ in ranks]
    return bundles, [node.schedule(b, resources["num_gpus"], 0, group) for b in bundles]


@pytest.mark.parametrize("parallelism", PARALLELISM.values(), ids=PARALLELISM.keys())
def test_each_gpu_worker_runs_on_the_one_gpu_its_own_bundle_reserved(parallelism, cuda, monkeypatch):
    model = make_spec(model={"parallelism": parallelism, "resources": {"cpu": 2, "gpu": 1}}).models[0]
    bundles, gpus = workers_gpus(model, cuda, monkeypatch)
    world = model.parallelism.world_size
    assert bundles == list(range(1, world + 1))  # never bundle 0, the replica's
    assert all(len(g) == 1 for g in gpus) and len({g[0] for g in gpus}) == world
    assert [g for b in bundles for g in cuda.bundle_gpus[b]] == [g[0] for g in gpus]
    # The worker is a Ray actor, not (a child of) the replica process, at every world size.
    assert engine_kwargs(model)["distributed_executor_backend"] == "ray"


def test_the_replica_reserves_no_gpu_and_its_bundle_holds_none(cuda):
    model = make_spec(model={"resources": {"gpu": 1}}).models[0]
    options = llm_deployment(model)._replica_config.ray_actor_options
    assert "num_gpus" not in options and options["num_cpus"] == 1
    group = cuda.reserve(placement_bundles(model))
    assert cuda.schedule(0, options.get("num_gpus", 0), options["num_cpus"], group) == []
    assert [b.get("GPU", 0) for b in placement_bundles(model)] == [0, 1]


async def test_the_device_comes_from_the_spec_not_from_what_the_replica_sees(cuda, monkeypatch, tmp_path):
    """The replica sees no CUDA (torch says so); the GPU spec still gets a Ray-executor
    engine with each rank's bundle named. A CPU spec on the same CUDA node is refused."""
    from vllm.v1.engine.async_llm import AsyncLLM

    (tmp_path / "config.json").write_text("{}")
    started = {}

    def capture(args, **_):
        started.update(backend=args.distributed_executor_backend, bundles=os.environ["VLLM_RAY_BUNDLE_INDICES"])
        raise EngineFailure("captured")

    monkeypatch.setattr(AsyncLLM, "from_engine_args", capture)
    for name in ("SHARDLINE_KERNELS", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # what start() sets is undone after the test
    gpu = make_spec(model={"path": str(tmp_path), "resources": {"gpu": 1}}).models[0]
    with pytest.raises(EngineFailure, match="captured"):
        await VLLMEngine(gpu).start()
    assert started == {"backend": "ray", "bundles": "1"}
    cpu = make_spec(model={"path": str(tmp_path)}).models[0]
    with pytest.raises(EngineFailure, match=r"resources.gpu is 0 \(a CPU engine\) but vLLM on this node is built for"):
        await VLLMEngine(cpu).start()


def test_a_cpu_spec_stays_on_cpu_when_the_process_sees_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model = make_spec(model={"parallelism": {"tensor": 2}}).models[0]
    assert device(model) == "cpu" and engine_kwargs(model)["distributed_executor_backend"] == "mp"
    check_platform(model, FakeCpuPlatform())


def test_a_gpu_spec_on_a_cpu_build_of_vllm_is_refused():
    model = make_spec(model={"resources": {"gpu": 1}}).models[0]
    with pytest.raises(EngineFailure, match=r"resources.gpu is 1 but vLLM on this node runs on 'cpu'"):
        check_platform(model, FakeCpuPlatform())
    check_platform(model, FakeCudaPlatform())


def test_gpu_env_names_each_ranks_bundle_and_one_gpu_per_worker():
    model = make_spec(model={"parallelism": {"tensor": 2, "pipeline": 2}, "resources": {"gpu": 1}}).models[0]
    assert gpu_worker_env(model) == {"VLLM_RAY_BUNDLE_INDICES": "1,2,3,4", "VLLM_RAY_PER_WORKER_GPUS": "1"}
