from builders import make_spec

from shardline.serve.app import logical_cpus_needed, placement_bundles


def test_placement_group_has_one_bundle_per_worker_plus_the_replica():
    spec = make_spec(model={"parallelism": {"tensor": 2, "pipeline": 2}, "resources": {"cpu": 2, "gpu": 1}})
    bundles = placement_bundles(spec.models[0])
    assert bundles[0] == {"CPU": 1.0}
    assert bundles[1:] == [{"CPU": 2.0, "GPU": 1.0}] * 4


def test_logical_cpus_cover_min_replicas_and_router():
    spec = make_spec(model={"parallelism": {"tensor": 2}, "replicas": {"min": 2, "max": 3}})
    assert logical_cpus_needed(spec) == (1 + 2) * 2 + 1
