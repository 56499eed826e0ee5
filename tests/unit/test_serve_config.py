"""`shardline render serve-config`: a Serve config that `serve deploy` accepts and
whose builder rebuilds the same application from the validated spec."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from builders import spec_dict
from shardline.errors import SpecError
from shardline.serve.serve_config import IMPORT_PATH, app_builder
from shardline.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def render(spec: Path, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "shardline.cli.main", "render", "serve-config", str(spec), "-o", str(out)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_rendered_demo_config_is_a_serve_config_for_the_same_spec(tmp_path):
    out = tmp_path / "serve.yaml"
    assert render(Path("deployments/kv-tiers.yaml"), out).returncode == 0
    config = yaml.safe_load(out.read_text())
    ServeDeploySchema.model_validate(config)
    assert config["proxy_location"] == "Disabled"
    (app,) = config["applications"]
    assert (app["name"], app["import_path"], app["route_prefix"]) == ("shardline-kv", IMPORT_PATH, None)
    rebuilt = app["args"]["spec"]
    assert rebuilt["models"][0]["path"] == str(ROOT / "models/trained/kv-large")  # absolute
    from shardline.spec import validate_spec

    assert validate_spec(rebuilt) == load_spec(ROOT / "deployments/kv-tiers.yaml")


def test_builder_builds_router_over_one_deployment_per_model():
    app = app_builder({"spec": spec_dict(router={"port": 0, "custom": {"shardline-router": 1}})})
    router = app._bound_deployment
    assert router.name == "router"
    assert router.ray_actor_options["resources"] == {"shardline-router": 1}
    handles = router.init_args[1]
    assert [h._bound_deployment.name for h in handles.values()] == ["llm-tiny-llama"]


def test_builder_rejects_an_invalid_spec_with_the_spec_error():
    with pytest.raises(SpecError, match=r"args.spec models\[0\].parallelism.tensor: .*greater than or equal to 1"):
        app_builder({"spec": spec_dict(model={"parallelism": {"tensor": 0}})})


def test_builder_rejects_unknown_args():
    with pytest.raises(SpecError, match=r"must be exactly \{spec: \.\.\.\}; got keys \['spec', 'tensor'\]"):
        app_builder({"spec": spec_dict(), "tensor": 2})


def test_render_of_an_invalid_spec_fails_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: m\n    path: /m\n    replicas: {min: 3, max: 1}\n")
    out = tmp_path / "serve.yaml"
    run = render(bad, out)
    assert run.returncode == 2
    assert "models[0].replicas: min (3) is greater than max (1)" in run.stderr
    assert not out.exists()
