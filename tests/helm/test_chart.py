"""The Helm chart, rendered by Helm's own engine for several values files.

Checks: every rendered object is a valid Kubernetes / KubeRay / Prometheus
Operator object; the RayService's Serve config is the one Python writes and its
builder accepts; groups are sized per model; the router Service reaches exactly
the pods router replicas are placed on; Ray's ports stay private; secrets are
referenced, never inlined; bad values fail with a message naming the problem.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema
from rendering import CHART, by_kind, render, validate, values_file, worker_groups

from shardline.serve.serve_config import IMPORT_PATH, app_builder, serve_config
from shardline.spec import validate_spec
from shardline.spec.chart_schema import SCHEMA_FILE, render_chart_schema

VALUES_FILES = [None, "cpu-demo.yaml", "gpu-production.yaml", "no-network-policy.yaml"]


@pytest.fixture(scope="module", params=VALUES_FILES, ids=lambda f: f or "chart-defaults")
def rendered(request):
    values = values_file(request.param) if request.param else {}
    return values, render(values)


def rayservice(objects):
    (service,) = by_kind(objects, "RayService")
    return service


def deployed_spec(objects) -> dict:
    config = yaml.safe_load(rayservice(objects)["spec"]["serveConfigV2"])
    return config["applications"][0]["args"]["spec"]


def test_every_rendered_object_is_valid_for_its_schema(rendered):
    _, objects = rendered
    for obj in objects:
        validate(obj)


def test_validation_rejects_a_misspelled_field():
    """The validators above are strict: a typo in any object fails."""
    objects = render(values_file("gpu-production.yaml"))
    bad_service = copy.deepcopy(by_kind(objects, "Service")[0])
    bad_service["spec"]["selectr"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad_service)
    bad_rayservice = copy.deepcopy(rayservice(objects))
    bad_rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0][
        "imagePullPolicyy"
    ] = "x"
    with pytest.raises(jsonschema.ValidationError, match="imagePullPolicyy"):
        validate(bad_rayservice)


def test_serve_config_is_the_one_python_writes_and_its_builder_accepts(rendered):
    _, objects = rendered
    config = yaml.safe_load(rayservice(objects)["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config)
    spec = validate_spec(deployed_spec(objects))
    python = serve_config(spec)
    assert {k: v for k, v in config.items() if k != "applications"} == {
        k: v for k, v in python.items() if k != "applications"
    }
    (app,), (expected,) = config["applications"], python["applications"]
    assert {k: app[k] for k in ("name", "route_prefix", "import_path")} == {
        k: expected[k] for k in ("name", "route_prefix", "import_path")
    }
    assert app["import_path"] == IMPORT_PATH
    built = app_builder(app["args"])
    assert built._bound_deployment.name == "router"


def test_values_spec_is_deployed_with_only_placement_resources_added(rendered):
    values, objects = rendered
    given = values.get("spec") or yaml.safe_load((CHART / "values.yaml").read_text())["spec"]
    deployed = deployed_spec(objects)
    for model in deployed["models"]:
        resources = model["resources"]
        assert resources["custom"].pop(f"shardline-model-{model['name']}") == 1
        if not resources["custom"]:
            del resources["custom"]
        if not resources:
            del model["resources"]
    assert deployed["router"]["custom"].pop("shardline-router") == 1
    del deployed["router"]["custom"]
    if (values.get("auth") or {}).get("existingSecret"):
        assert deployed["router"].pop("auth") == {"tokens_file": "/etc/shardline/auth/tokens"}
    # telemetry: the chart's default metrics ports under the given ones, plus the otel
    # values (tests/helm/test_observability.py checks what they become).
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["spec"]["telemetry"]
    telemetry = deployed.pop("telemetry")
    assert telemetry.items() >= {**defaults, **given.get("telemetry", {})}.items()
    assert set(telemetry) - set(defaults) - set(given.get("telemetry", {})) <= {
        "exporter",
        "otlp_endpoint",
        "service_name",
    }
    assert deployed["models"] == given["models"]
    assert deployed["router"] == given.get("router", {"port": 50051})


def test_each_model_gets_a_worker_group_sized_for_one_replica():
    objects = render(values_file("gpu-production.yaml"))
    cluster = rayservice(objects)["spec"]["rayClusterConfig"]
    groups = worker_groups(rayservice(objects))
    big = groups["llm-llama-70b"]
    # 1 CPU for the replica process + 8 workers (TP 4 x PP 2) x 2 CPUs; 8 GPUs.
    assert big["rayStartParams"]["num-cpus"] == "17"
    assert big["rayStartParams"]["num-gpus"] == "8"
    assert json.loads(big["rayStartParams"]["resources"].strip("'")) == {"shardline-model-llama-70b": 8}
    limits = big["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "17", "memory": "200Gi", "nvidia.com/gpu": "8"}
    assert (big["minReplicas"], big["replicas"], big["maxReplicas"]) == (1, 1, 3)
    small = groups["llm-llama-8b"]
    assert (small["rayStartParams"]["num-cpus"], small["rayStartParams"]["num-gpus"]) == ("5", "1")
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_cpu_models_ask_for_no_gpu():
    groups = worker_groups(rayservice(render(values_file("cpu-demo.yaml"))))
    large = groups["llm-kv-large"]
    assert large["rayStartParams"]["num-cpus"] == "3"  # replica + TP 2
    assert "num-gpus" not in large["rayStartParams"]
    assert "nvidia.com/gpu" not in large["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_router_service_selects_exactly_the_pods_router_replicas_need(rendered):
    _, objects = rendered
    service = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"].endswith("-router"))
    selector = service["spec"]["selector"].items()
    spec = rayservice(objects)["spec"]["rayClusterConfig"]
    pods = {"head": spec["headGroupSpec"], **worker_groups(rayservice(objects))}
    selected = [name for name, g in pods.items() if selector <= g["template"]["metadata"]["labels"].items()]
    assert selected == ["router"]
    advertising = [name for name, g in pods.items() if "shardline-router" in g["rayStartParams"].get("resources", "")]
    assert advertising == ["router"]
    router_spec = deployed_spec(objects)["router"]
    assert router_spec["custom"]["shardline-router"] == 1
    assert service["spec"]["ports"][0]["port"] == router_spec["port"]
    container = pods["router"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["grpc"]["port"] == router_spec["port"]


def test_pods_run_as_non_root_without_privilege_escalation(rendered):
    _, objects = rendered
    spec = rayservice(objects)["spec"]["rayClusterConfig"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_network_policies_keep_ray_ports_to_the_release():
    policies = {
        p["metadata"]["name"]: p["spec"] for p in by_kind(render(values_file("gpu-production.yaml")), "NetworkPolicy")
    }
    release = {"app.kubernetes.io/name": "shardline", "app.kubernetes.io/instance": "demo"}
    private = policies["demo-shardline-ray-private"]
    assert private["podSelector"]["matchLabels"] == release
    assert private["ingress"] == [{"from": [{"podSelector": {"matchLabels": release}}]}]
    router = policies["demo-shardline-router"]["ingress"]
    assert router[0]["ports"] == [{"port": 9000, "protocol": "TCP"}]
    assert router[0]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}]
    operator = policies["demo-shardline-operator"]
    assert operator["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "head"
    assert {p["port"] for p in operator["ingress"][0]["ports"]} == {8265, 52365}
    metrics_ports = policies["demo-shardline-metrics"]["ingress"][0]["ports"]
    assert {p["port"] for p in metrics_ports} == {8080, 9100, 9200}  # Ray's, the router's, the replicas'
    assert {p["protocol"] for p in metrics_ports} == {"TCP"}


def test_auth_tokens_come_from_a_secret_and_otel_endpoint_from_values():
    objects = render(values_file("gpu-production.yaml"))
    router = worker_groups(rayservice(objects))["router"]["template"]["spec"]
    assert router["volumes"][1]["secret"]["secretName"] == "shardline-tokens"
    assert deployed_spec(objects)["router"]["auth"]["tokens_file"] == "/etc/shardline/auth/tokens"
    telemetry = deployed_spec(objects)["telemetry"]
    assert (telemetry["exporter"], telemetry["otlp_endpoint"]) == (
        "otlp-grpc",
        "http://otel-collector.observability:4317",
    )
    (monitor,) = by_kind(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


BAD_VALUES = {
    "unknown spec key": (
        {"spec": {"models": [{"name": "m", "path": "/m", "tensor_parallel": 2}]}},
        "at '/spec/models/0': additional properties 'tensor_parallel' not allowed",
    ),
    "unknown chart key": ({"replicaCount": 3}, "additional properties 'replicaCount' not allowed"),
    "token in values": (
        {"auth": {"existingSecret": "s", "key": "tokens", "token": "hunter2"}},
        "at '/auth': additional properties 'token' not allowed",
    ),
    "spec bound": (
        {"spec": {"models": [{"name": "m", "path": "/m", "parallelism": {"tensor": 0}}]}},
        "at '/spec/models/0/parallelism/tensor': minimum: got 0, want 1",
    ),
    "spec type": ({"spec": {"models": [{"name": "m", "path": "/m", "dtype": "fp8"}]}}, "at '/spec/models/0/dtype'"),
    "root": ({"podSecurityContext": {"runAsNonRoot": False}}, "at '/podSecurityContext/runAsNonRoot'"),
    "relative model path": (
        {"spec": {"models": [{"name": "m", "path": "models/m"}]}},
        'spec.models[0].path is "models/m"; in the chart model paths must be absolute',
    ),
    "router port 0": ({"spec": {"router": {"port": 0}}}, "spec.router.port is 0; the chart needs a fixed port"),
}


@pytest.mark.parametrize("values,message", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_fail_with_a_message_naming_the_problem(values, message):
    with pytest.raises(helm.HelmError) as failure:
        render(values)
    assert message in str(failure.value)


def test_values_schema_embeds_the_spec_schema_and_has_not_drifted():
    committed = (CHART / SCHEMA_FILE).read_text()
    assert committed == render_chart_schema(), "chart schema changed: run `make schema` and commit"
    spec_schema = json.loads((CHART.parents[1] / "deployments" / "deploymentspec.schema.json").read_text())
    chart_schema = json.loads(committed)
    assert chart_schema["$defs"] == spec_schema["$defs"]
    assert chart_schema["properties"]["spec"]["properties"] == spec_schema["properties"]


def test_every_value_has_a_doc_comment():
    """helm-docs style: every leaf value outside `spec` has a `# --` comment above it
    or above the value it belongs to (e.g. `head.resources` covers its requests)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    keys = [
        (i, len(line) - len(line.lstrip())) for i, line in enumerate(lines) if re.match(r"^\s*[A-Za-z][\w.-]*:", line)
    ]
    undocumented = []
    for n, (i, indent) in enumerate(keys):
        chain = [i] + _ancestors(keys[:n], indent)
        if lines[chain[-1]].startswith("spec:") or _is_parent(keys, n):
            continue
        if not any(_documented(lines, j) for j in chain):
            undocumented.append(lines[i].strip())
    assert undocumented == []


def _ancestors(previous, indent):
    chain = []
    for i, level in reversed(previous):
        if level < indent:
            chain.append(i)
            indent = level
    return chain


def _is_parent(keys, n):
    return n + 1 < len(keys) and keys[n + 1][1] > keys[n][1]


def _documented(lines, i):
    j = i - 1
    while j >= 0 and lines[j].strip().startswith("#"):
        if lines[j].strip().startswith("# --"):
            return True
        j -= 1
    return False


def test_default_image_is_the_one_make_image_tags():
    """`make image` tags `<IMAGE>:<pyproject version>-cpu`; the chart's pods run it by default."""
    names = subprocess.run(["make", "-s", "image-names"], cwd=CHART.parents[1], capture_output=True, text=True)
    cpu, _gpu = names.stdout.split()
    spec = rayservice(render())["spec"]["rayClusterConfig"]
    images = {
        c["image"]
        for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for c in g["template"]["spec"]["containers"]
    }
    assert images == {cpu}
    chosen = rayservice(render({"image": {"tag": "0.1.0-gpu"}}))["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert chosen["template"]["spec"]["containers"][0]["image"] == cpu.replace("-cpu", "-gpu")
