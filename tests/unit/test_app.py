from types import SimpleNamespace

from builders import make_spec
from shardline.serve.app import logical_cpus_needed, placement_bundles


def test_placement_group_has_one_bundle_per_worker_plus_the_replica():
    spec = make_spec(model={"parallelism": {"tensor": 2, "pipeline": 2}, "resources": {"cpu": 2, "gpu": 1}})
    bundles = placement_bundles(spec.models[0])
    assert bundles[0] == {"CPU": 1.0}
    assert bundles[1:] == [{"CPU": 2.0, "GPU": 1.0}] * 4


def test_logical_cpus_cover_max_replicas_and_router():
    # Room for every replica autoscaling may add, or the added ones never place.
    spec = make_spec(model={"parallelism": {"tensor": 2}, "replicas": {"min": 2, "max": 3}})
    assert logical_cpus_needed(spec) == (1 + 2) * 3 + 1


def test_router_and_engines_share_the_drain_timeout_and_surge():
    from shardline.serve.app import ROUTER_WAIT_LOOP_S, SHUTDOWN_MARGIN_S, llm_deployment, router_deployment

    spec = make_spec(rollout={"drain_timeout_s": 45, "surge_percent": 50})
    engine = llm_deployment(spec.models[0], spec.rollout)._deployment_config
    router = router_deployment(spec)._deployment_config
    for config in (engine, router):
        assert config.graceful_shutdown_timeout_s == 45 + SHUTDOWN_MARGIN_S
        assert config.max_surge_percent == 50
    # The router's gRPC streams are not Serve requests: it drains in its destructor, at once.
    assert router.graceful_shutdown_wait_loop_s == ROUTER_WAIT_LOOP_S


def versions(spec) -> dict[str, str]:
    """Each deployment's version, as Serve receives it."""
    from shardline.serve.app import build_app

    router = build_app(spec)._bound_deployment
    engines = router.init_args[1]
    return {"router": router._version, **{name: app._bound_deployment._version for name, app in engines.items()}}


def test_a_redeploy_restarts_only_the_deployments_whose_spec_changed():
    spec = versions(make_spec())
    assert versions(make_spec()) == spec  # the same spec: Serve keeps every replica
    router_only = versions(make_spec(limits={"max_concurrent_requests": 7}))
    assert router_only["tiny-llama"] == spec["tiny-llama"] and router_only["router"] != spec["router"]
    model = versions(make_spec(model={"max_model_len": 128}))
    assert model["tiny-llama"] != spec["tiny-llama"] and model["router"] != spec["router"]
    # Replica counts are Serve's own deployment config, applied in place: no new version.
    assert versions(make_spec(model={"replicas": {"min": 2, "max": 2}}))["tiny-llama"] == spec["tiny-llama"]


def test_a_retried_deployment_gets_a_new_version_and_the_others_keep_theirs():
    from shardline.serve.app import build_app

    spec = make_spec()
    engines = build_app(spec, retry=frozenset({"llm-tiny-llama"}))._bound_deployment.init_args[1]
    assert engines["tiny-llama"]._bound_deployment._version != versions(spec)["tiny-llama"]
    assert versions(spec)["router"] == build_app(spec, retry=frozenset({"llm-tiny-llama"}))._bound_deployment._version


def test_a_redeploy_retries_the_deployments_that_failed():
    from shardline.serve.lifecycle import failed_deployments

    status = SimpleNamespace(
        deployments={
            "router": SimpleNamespace(status="HEALTHY"),
            "llm-a": SimpleNamespace(status="DEPLOY_FAILED"),
            "llm-b": SimpleNamespace(status="UNHEALTHY"),
            "llm-c": SimpleNamespace(status="UPDATING"),  # its update is still under way
        }
    )
    assert failed_deployments(status) == {"llm-a", "llm-b"}
    assert failed_deployments(None) == frozenset()  # a new app
