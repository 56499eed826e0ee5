"""Telemetry without a network: spec rules, the file span store, the tree, vLLM switches."""

import os

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from builders import make_spec
from shardline.cli.main import main
from shardline.engine.tracing import UNUSED_ENDPOINT, vllm_tracing_args
from shardline.errors import SpecError
from shardline.spec import TelemetrySpec
from shardline.telemetry import attributes as attr
from shardline.telemetry import store
from shardline.telemetry.tracing import process_resource
from shardline.telemetry.tree import render_trace


def test_otlp_exporters_need_an_endpoint():
    with pytest.raises(SpecError, match="exporter 'otlp-http' needs otlp_endpoint"):
        make_spec(telemetry={"exporter": "otlp-http"})
    assert make_spec(telemetry={"exporter": "otlp-grpc", "otlp_endpoint": "http://c:4317"}).telemetry.tracing


def test_tracing_refuses_engines_without_stats():
    with pytest.raises(SpecError, match="disable_log_stats.*vllm#25352"):
        make_spec(model={"engine_args": {"disable_log_stats": True}})
    make_spec(model={"engine_args": {"disable_log_stats": True}}, telemetry={"exporter": "off"})


def test_vllm_tracing_switches_follow_the_exporter():
    env = {}
    assert vllm_tracing_args(TelemetrySpec(), env) == {"otlp_traces_endpoint": UNUSED_ENDPOINT}
    assert env == {"OTEL_SDK_DISABLED": "true"}  # engine subprocesses: no collector to dial
    env = {}
    otlp = TelemetrySpec(exporter="otlp-http", otlp_endpoint="http://c:4318/v1/traces")
    assert vllm_tracing_args(otlp, env) == {"otlp_traces_endpoint": "http://c:4318/v1/traces"}
    assert env == {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert vllm_tracing_args(TelemetrySpec(exporter="off"), env) == {} == vllm_tracing_args(None, env)


def record_request_trace(directory, role="router") -> str:
    """Writes a small request trace through the file exporter; returns its id."""
    provider = TracerProvider(resource=process_resource(role))
    provider.add_span_processor(SimpleSpanProcessor(store.FileSpanExporter(str(directory))))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(attr.SERVER_SPAN_PREFIX + "Generate") as root:
        with tracer.start_as_current_span(attr.ADMISSION_SPAN):
            pass
        with tracer.start_as_current_span(attr.REPLICA_CALL_SPAN):
            with tracer.start_as_current_span(attr.REPLICA_SPAN):
                pass
    provider.shutdown()
    return format(root.get_span_context().trace_id, "032x")


def test_file_store_keeps_spans_per_process_and_finds_the_last_request(tmp_path):
    first, last = record_request_trace(tmp_path), record_request_trace(tmp_path)
    spans = store.read_spans(str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == [f"spans-{os.uname().nodename}-{os.getpid()}.jsonl"]
    assert store.last_request_trace(spans) == last != first
    assert {s["name"] for s in store.trace_spans(spans, first)} >= {attr.ADMISSION_SPAN, attr.REPLICA_SPAN}
    with pytest.raises(store.TraceNotFound, match="no spans of trace 0123"):
        store.trace_spans(spans, "0123")


def test_opening_the_store_removes_files_past_retention(tmp_path):
    stale, fresh = tmp_path / "spans-old-1.jsonl", tmp_path / "spans-new-2.jsonl"
    stale.write_text("")
    fresh.write_text("")
    os.utime(stale, (1, 1))
    store.FileSpanExporter(str(tmp_path))
    assert not stale.exists() and fresh.exists()


def test_tree_nests_children_under_parents_with_durations_and_processes(tmp_path):
    tid = record_request_trace(tmp_path)
    lines = render_trace(store.trace_spans(store.read_spans(str(tmp_path)), tid))
    assert lines[0] == f"trace {tid}: 4 spans, 1 processes, 1 nodes"
    names = [line.split(" ms  [")[0].rsplit("  ", 1)[0] for line in lines[1:]]
    assert names == [
        attr.SERVER_SPAN_PREFIX + "Generate",
        f"├─ {attr.ADMISSION_SPAN}",
        f"└─ {attr.REPLICA_CALL_SPAN}",
        f"   └─ {attr.REPLICA_SPAN}",
    ]
    assert all(" ms  [router pid " in line for line in lines[1:])


def test_shardline_trace_prints_the_last_tree(tmp_path, capsys):
    tid = record_request_trace(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"models: [{{name: m, path: /m}}]\ntelemetry: {{trace_dir: {tmp_path}}}\n")
    assert main(["trace", "--last", "--spec", str(spec)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"trace {tid}") and attr.REPLICA_SPAN in out
    assert main(["trace", "--spec", str(spec)]) == 2  # neither an id nor --last


def test_metrics_ports_stay_apart_and_in_range():
    with pytest.raises(SpecError, match=r"metrics_port \(9466\) is inside the replicas' ports 9465..9472"):
        make_spec(telemetry={"metrics_port": 9466, "replica_metrics_port": 9465})
    with pytest.raises(SpecError, match=r"replica_metrics_port \(65530\) \+ replica_metrics_ports \(8\) passes"):
        make_spec(telemetry={"replica_metrics_port": 65530})
    make_spec(telemetry={"metrics_port": 9464, "replica_metrics_port": 9465})


def test_service_name_comes_from_the_spec_and_kubernetes_attributes_from_the_environment(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=p-1,k8s.node.name=n-2")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "ignored")
    resource = process_resource("replica", make_spec(telemetry={"service_name": "chat"}).telemetry.service_name)
    a = resource.attributes
    assert (a[attr.SERVICE_NAME], a[attr.PROCESS_ROLE], a["k8s.pod.name"], a["k8s.node.name"]) == (
        "chat",
        "replica",
        "p-1",
        "n-2",
    )
