"""Invalid specs never partially deploy, on the session's real Ray cluster.

- A spec that fails validation: `shardline up` exits 2 naming the problem before
  it touches the cluster; Serve's applications are what they were.
- A spec that validates but fails on the cluster (a model directory missing on
  the node, a tokens file the router cannot read, a max_model_len the engine
  refuses): deploy raises DeployError quoting the replica's own error, and the
  application is gone: no Serve app, no live replica actor, no placement group.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import yaml
from hypothesis import HealthCheck, given, reject, settings
from ray import serve

from fuzzing import mutated_specs
from shardline.cli.main import main
from shardline.errors import SpecError
from shardline.serve import lifecycle
from shardline.spec import load_spec, validate_spec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KV_SMALL = ROOT / "models" / "trained" / "kv-small"
DEPLOY_TIMEOUT_S = 240


def small_spec(name: str, model: dict | None = None, router: dict | None = None) -> dict:
    return {
        "name": name,
        "models": [
            {
                "name": "kv-small",
                "path": str(KV_SMALL),
                "dtype": "float32",
                "max_model_len": 256,
                "resources": {"cpu": 0.5},
                "engine_args": {"enforce_eager": True, "gpu_memory_utilization": 0.3},
                **(model or {}),
            }
        ],
        "router": {"port": 0, "cpu": 0.5, **(router or {})},
        "telemetry": {"exporter": "off", "metrics": False},
    }


def leftovers(app: str) -> list[str]:
    """What of `app` is still on the cluster: its Serve app, live actors, placement groups."""
    found = [f"application {app}"] if app in serve.status().applications else []
    # The GCS tables directly: the state API would need the dashboard, which tests leave off.
    alive = ray._private.state.actors(actor_state_name="ALIVE").values()
    found += [a["Name"] for a in alive if app in (a.get("Name") or "")]
    found += [
        f"placement group {pg['name']}"
        for pg in ray.util.placement_group_table().values()
        if app in pg.get("name", "") and pg["state"] != "REMOVED"
    ]
    return found


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_specs())
def test_shardline_up_with_an_invalid_spec_never_reaches_the_cluster(ray_cluster, tmp_path_factory, monkeypatch, data):
    try:
        validate_spec(data)
    except SpecError:
        pass
    else:
        reject()  # the mutation happened to be valid
    path = tmp_path_factory.mktemp("invalid") / "spec.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        load_spec(path)
        reject()  # valid once read back from YAML
    except SpecError:
        pass
    touched = []
    monkeypatch.setattr(lifecycle, "connect", lambda *a, **k: touched.append("connect"))
    monkeypatch.setattr(lifecycle, "deploy", lambda *a, **k: touched.append("deploy"))
    before = set(serve.status().applications)
    assert main(["up", str(path), "--address", ray.get_runtime_context().gcs_address]) == 2
    assert touched == [] and set(serve.status().applications) == before


@pytest.mark.parametrize(
    ("case", "overrides", "message"),
    [
        (
            "missing-model",
            {"model": {"path": "/nonexistent/kv-small"}},
            "no Hugging Face model at /nonexistent/kv-small",
        ),
        (
            "missing-tokens",
            {"router": {"auth": {"tokens_file": "/nonexistent/tokens.env"}}},
            "router.auth.tokens_file '/nonexistent/tokens.env': No such file or directory",
        ),
        (
            "engine-refuses",
            {"model": {"max_model_len": 1_000_000}},
            "vLLM refused the configuration: Value error, User-specified max_model_len (1000000) is greater than",
        ),
    ],
)
def test_a_valid_spec_that_fails_on_the_cluster_leaves_nothing_deployed(ray_cluster, case, overrides, message):
    app = f"shardline-fail-{case}"
    spec = validate_spec(small_spec(app, **overrides))
    with pytest.raises(lifecycle.DeployError) as info:
        lifecycle.deploy(spec, DEPLOY_TIMEOUT_S)
    assert message in str(info.value)
    assert f"application {app!r} removed, nothing left deployed" in str(info.value)
    assert leftovers(app) == []
