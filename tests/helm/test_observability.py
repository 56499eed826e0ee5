"""The chart's metrics and traces contract, end to end.

Metrics: the ports the chart scrapes (ServiceMonitor -> metrics Service -> named
container ports) and opens (NetworkPolicy) are the ports the processes bind, as the
application computes them from the spec the chart embeds (`shardline.telemetry.metrics`),
and only one router or engine replica fits on a pod, so each binds its base port.
Traces: a values file with `otel.endpoint` yields a spec whose exporter is OTLP to that
endpoint, and a span sent through that exporter reaches a real OTLP receiver with the
service name and the pod, node and namespace the chart's downward-API env describes.
"""

from __future__ import annotations

import json
import re

import helm_python as helm
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from rendering import by_kind, render, values_file, worker_groups

from otlp_collector import OtlpCollector
from shardline.serve.app import placement_bundles
from shardline.spec import validate_spec
from shardline.telemetry import attributes as attr
from shardline.telemetry.metrics import replica_metrics_ports, router_metrics_port
from shardline.telemetry.tracing import process_resource, span_exporter

VALUES_FILES = [None, "cpu-demo.yaml", "gpu-production.yaml", "no-network-policy.yaml"]
MONITORED = {"metrics": {"serviceMonitor": {"enabled": True}}}


def rayservice(objects):
    (service,) = by_kind(objects, "RayService")
    return service


def deployed_spec(objects):
    config = yaml.safe_load(rayservice(objects)["spec"]["serveConfigV2"])
    return validate_spec(config["applications"][0]["args"]["spec"])


def groups(objects) -> dict[str, dict]:
    cluster = rayservice(objects)["spec"]["rayClusterConfig"]
    return {"head": cluster["headGroupSpec"], **worker_groups(rayservice(objects))}


def container_ports(group) -> dict[str, int]:
    (container,) = group["template"]["spec"]["containers"]
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def monitored(name: str | None) -> dict:
    values = values_file(name) if name else {}
    metrics = values.setdefault("metrics", {})
    metrics["serviceMonitor"] = {**metrics.get("serviceMonitor", {}), "enabled": True}
    return values


@pytest.fixture(scope="module", params=VALUES_FILES, ids=lambda f: f or "chart-defaults")
def rendered(request):
    return render(monitored(request.param))


def test_pods_expose_the_ports_their_processes_bind(rendered):
    telemetry = deployed_spec(rendered).telemetry
    router_port, replica_ports = router_metrics_port(telemetry), replica_metrics_ports(telemetry)
    assert router_port and replica_ports, "the chart deploys fixed metrics ports"
    for name, group in groups(rendered).items():
        ports = container_ports(group)
        # Ray's own metrics: the port `ray start` is told to export on.
        assert ports["ray-metrics"] == int(group["rayStartParams"]["metrics-export-port"])
        if name == "router":
            assert ports["router-metrics"] == router_port
        elif name.startswith("llm-"):
            assert ports["replica-metrics"] == replica_ports[0]
        else:
            assert not {"router-metrics", "replica-metrics"} & set(ports)


def test_one_router_or_replica_fits_on_a_pod_so_each_binds_the_base_port(rendered):
    """Two replicas on one node could not share a fixed port (the second would take
    base + 1, which nothing scrapes); the chart's placement resources allow one per pod."""
    spec = deployed_spec(rendered)
    pods = groups(rendered)
    for model in spec.models:
        group = pods[f"llm-{model.name}"]
        resource = f"shardline-model-{model.name}"
        advertised = json.loads(group["rayStartParams"]["resources"].strip("'"))[resource]
        one_replica = sum(b.get(resource, 0) for b in placement_bundles(model))
        assert one_replica <= advertised < 2 * one_replica
    advertised = json.loads(pods["router"]["rayStartParams"]["resources"].strip("'"))
    (resource,) = advertised
    assert spec.router.custom[resource] <= advertised[resource] < 2 * spec.router.custom[resource]


def test_the_service_monitor_scrapes_exactly_those_ports(rendered):
    telemetry = deployed_spec(rendered).telemetry
    bound = {
        "router-metrics": router_metrics_port(telemetry),
        "replica-metrics": replica_metrics_ports(telemetry)[0],
    }
    (monitor,) = by_kind(rendered, "ServiceMonitor")
    (service,) = [s for s in by_kind(rendered, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    scraped = {e["port"] for e in monitor["spec"]["endpoints"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert scraped == set(service_ports) == {"ray-metrics", *bound}
    exposed: dict[str, set[int]] = {}
    for group in groups(rendered).values():
        labels = group["template"]["metadata"]["labels"]
        if service["spec"]["selector"].items() <= labels.items():
            for name, port in container_ports(group).items():
                exposed.setdefault(name, set()).add(port)
    for name, port in service_ports.items():
        assert port["targetPort"] == name
        assert exposed[name] == {port["port"]}, f"{name}: pods expose {exposed[name]}, Service says {port['port']}"
    for name, number in bound.items():
        assert service_ports[name]["port"] == number


def test_network_policy_opens_the_scraped_ports_to_the_scraper():
    objects = render(values_file("gpu-production.yaml"))
    telemetry = deployed_spec(objects).telemetry
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
    opened = {p["port"] for p in policies["demo-shardline-metrics"]["ingress"][0]["ports"]}
    assert opened == {8080, router_metrics_port(telemetry), replica_metrics_ports(telemetry)[0]} == {8080, 9100, 9200}


def test_metrics_off_leaves_only_rays_port():
    objects = render({**MONITORED, "spec": {"telemetry": {"metrics": False}}})
    for group in groups(objects).values():
        assert set(container_ports(group)) - {"grpc", "gcs", "dashboard", "client"} == {"ray-metrics"}
    (monitor,) = by_kind(objects, "ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["ray-metrics"]


def downward_env(container: dict, pod: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: fieldRefs from `pod`,
    then `$(VAR)` references expanded (Kubernetes' dependent variables)."""
    env: dict[str, str] = {}
    for e in container["env"]:
        if "valueFrom" in e:
            env[e["name"]] = pod[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
    return env


POD = {"metadata.name": "demo-router-x7k2p", "metadata.namespace": "serving", "spec.nodeName": "gpu-node-3"}


@pytest.fixture
def collector():
    collector = OtlpCollector()
    yield collector
    collector.stop()


def test_otel_values_make_spans_leave_the_pod_with_service_and_kubernetes_attributes(collector, monkeypatch):
    values = values_file("gpu-production.yaml")
    values["otel"] = {"endpoint": collector.endpoint, "protocol": "grpc", "serviceName": "shardline-chat"}
    objects = render(values)
    telemetry = deployed_spec(objects).telemetry
    assert (telemetry.exporter, telemetry.otlp_endpoint, telemetry.service_name) == (
        "otlp-grpc",
        collector.endpoint,
        "shardline-chat",
    )
    (container,) = worker_groups(rayservice(objects))["router"]["template"]["spec"]["containers"]
    for name, value in downward_env(container, POD).items():
        monkeypatch.setenv(name, value)
    exporter = span_exporter(telemetry)
    assert isinstance(exporter, GrpcExporter)
    provider = TracerProvider(resource=process_resource("router", telemetry.service_name))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("router.admission") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    (received,) = collector.trace(trace_id, until=bool)
    resource = received["resource"]
    assert resource[attr.SERVICE_NAME] == "shardline-chat"
    assert resource[attr.PROCESS_ROLE] == "router"
    assert (resource["k8s.pod.name"], resource["k8s.namespace.name"], resource["k8s.node.name"]) == (
        "demo-router-x7k2p",
        "serving",
        "gpu-node-3",
    )


def test_otel_over_http_and_without_an_endpoint():
    http = deployed_spec(render({"otel": {"endpoint": "http://c:4318/v1/traces", "protocol": "http"}})).telemetry
    assert (http.exporter, http.otlp_endpoint) == ("otlp-http", "http://c:4318/v1/traces")
    assert isinstance(span_exporter(http), HttpExporter)
    assert deployed_spec(render()).telemetry.exporter == "off"  # no collector: nothing exported
    chosen = render({"spec": {"telemetry": {"exporter": "otlp-grpc", "otlp_endpoint": "http://mine:4317"}}})
    assert deployed_spec(chosen).telemetry.otlp_endpoint == "http://mine:4317"


BAD_VALUES = {
    "collector named twice": (
        {"otel": {"endpoint": "http://a:4317"}, "spec": {"telemetry": {"exporter": "file"}}},
        "otel.endpoint is set and so is spec.telemetry.exporter/otlp_endpoint",
    ),
    "service named twice": (
        {"otel": {"serviceName": "a"}, "spec": {"telemetry": {"service_name": "b"}}},
        'spec.telemetry.service_name is "b" but otel.serviceName is "a"',
    ),
    "router metrics port 0": (
        {"spec": {"telemetry": {"metrics_port": 0}}},
        "spec.telemetry.metrics_port is 0; the chart needs fixed metrics ports",
    ),
    "replica metrics port 0": (
        {"spec": {"telemetry": {"replica_metrics_port": 0}}},
        "spec.telemetry.replica_metrics_port is 0",
    ),
    "unknown protocol": ({"otel": {"protocol": "zipkin"}}, "at '/otel/protocol'"),
}


@pytest.mark.parametrize("values,message", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_observability_values_fail_with_a_message(values, message):
    with pytest.raises(helm.HelmError) as failure:
        render(values)
    assert message in str(failure.value)
