"""Tracing and metrics across nodes: a real two-node Ray cluster on this machine.

`ray start --head` (resource `node_a`) plus `ray start --address` (resource
`node_b`), each with its own ports; the router is pinned to node A, the tiny
Llama's replica to node B. An OTLP/gRPC receiver in this process collects the
spans of every process. Ray runs only in subprocesses (`ray start`,
`shardline up --address`), so this test shares nothing with the session's
embedded cluster; each `ray start --block` is stopped through its own process
group, which takes its raylet, workers and engine down with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otlp_collector import OtlpCollector
from shardline.client import Client, trace_id
from shardline.telemetry import attributes as attr
from shardline.telemetry.tracing import process_resource
from waiting import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP = "trace-it"
MODEL = "tiny-llama"
PROMPT = "The secret word is pineapple"
BIN = Path(sys.executable).parent
# `ray start` turns on token authentication by default; this cluster is local and
# short-lived, and every process that joins it (drivers included) must agree.
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_args(resource: str, worker_ports: int) -> list[str]:
    ports = {
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
        "--min-worker-port": worker_ports,
        "--max-worker-port": worker_ports + 199,
    }
    return [
        "--block",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=3",
        "--disable-usage-stats",
        f"--resources={json.dumps({resource: 10})}",
        *(f"{k}={v}" for k, v in ports.items()),
    ]


def start_node(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "ray"), "start", *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=ENV,
    )


def stop_node(proc: subprocess.Popen) -> None:
    """Kill the node's whole process group (ours alone: `start_new_session`).

    A graceful SIGTERM would first try to drain the node through a GCS that is
    going down with it (30 s of waiting); nothing here needs a graceful exit.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def wait_port(port: int, timeout_s: float = 60) -> None:
    def listening():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    eventually(listening, timeout_s=timeout_s, interval_s=0.5, message=f"port {port} listening")


def ray_python(address: str, code: str) -> object:
    """Run `code` (which prints JSON) in a driver attached to the test cluster."""
    script = f"import json, ray\nfrom ray import serve\nray.init(address={address!r}, logging_level='ERROR')\n{code}"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=ENV)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


class Cluster:
    def __init__(self, address: str, target: str, collector: OtlpCollector, router_metrics: int, logs: Path):
        self.address, self.target, self.collector = address, target, collector
        self.router_metrics, self.logs = router_metrics, logs

    def node_ids(self) -> dict[str, str]:
        code = (
            "print(json.dumps({k: n['NodeID'] for n in ray.nodes() if n['Alive'] "
            "for k in n['Resources'] if k.startswith('node_')}))"
        )
        return ray_python(self.address, code)

    def replica_metrics(self) -> str:
        code = (
            f"h = serve.get_deployment_handle('llm-{MODEL}', app_name={APP!r})\n"
            "print(json.dumps(h.metrics_endpoint.remote().result(timeout_s=60)))"
        )
        endpoint = ray_python(self.address, code)
        return scrape(endpoint["port"])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


@pytest.fixture(scope="module")
def cluster():
    tmp = Path(tempfile.mkdtemp(prefix="sl-ray-", dir="/tmp"))  # short: Ray's socket paths
    collector = OtlpCollector()
    gcs, router_metrics = free_port(), free_port()
    head = start_node(
        [
            "--head",
            f"--port={gcs}",
            f"--temp-dir={tmp}",
            f"--ray-client-server-port={free_port()}",
            "--include-dashboard=false",
            *node_args("node_a", 21000),
        ],
        tmp / "head.log",
    )
    nodes = [head]
    try:
        wait_port(gcs)
        address = f"127.0.0.1:{gcs}"
        nodes.append(start_node([f"--address={address}", *node_args("node_b", 21400)], tmp / "worker.log"))
        spec = tmp / "spec.yaml"
        spec.write_text(
            json.dumps(
                {
                    "name": APP,
                    "models": [
                        {
                            "name": MODEL,
                            "path": str(ROOT / ".cache/models/tiny-llama"),
                            "dtype": "float32",
                            "max_model_len": 256,
                            "resources": {"custom": {"node_b": 1}},
                            "engine_args": {"enforce_eager": True, "gpu_memory_utilization": 0.3},
                        }
                    ],
                    "router": {"port": 0, "custom": {"node_a": 1}},
                    "telemetry": {
                        "exporter": "otlp-grpc",
                        "otlp_endpoint": collector.endpoint,
                        "metrics_port": router_metrics,
                    },
                }
            )
        )
        up = subprocess.run(
            [str(BIN / "shardline"), "up", str(spec), "--address", address, "--timeout", "300"],
            capture_output=True,
            text=True,
            timeout=360,
            env=ENV,
        )
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:] + (tmp / "worker.log").read_text()[-2000:]
        target = up.stdout.split("SERVING on ")[1].split()[0]
        yield Cluster(address, target, collector, router_metrics, tmp)
    finally:
        for node in nodes:
            stop_node(node)
        collector.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def by_name(spans: list[dict]) -> dict[str, dict]:
    return {s["name"]: s for s in spans}


def complete(spans: list[dict]) -> bool:
    return {attr.VLLM_REQUEST_SPAN, attr.REPLICA_SPAN, attr.SERVER_SPAN_PREFIX + "GenerateStream"} <= set(
        by_name(spans)
    )


def generate(cluster: Cluster, max_tokens: int = 6) -> tuple[str, list]:
    with Client(cluster.target) as client:
        call = client.stream(MODEL, PROMPT, max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        chunks = list(call)
        return trace_id(call), chunks


def test_one_trace_spans_router_and_replica_on_two_nodes_down_to_vllm(cluster):
    tid, chunks = generate(cluster)
    assert len(tid) == 32 and sum(len(c.token_ids) for c in chunks) == 6
    spans = cluster.collector.trace(tid, until=complete)
    names = by_name(spans)
    server = names[attr.SERVER_SPAN_PREFIX + "GenerateStream"]
    attempt, call = names[attr.CASCADE_ATTEMPT_SPAN], names[attr.REPLICA_CALL_SPAN]
    replica, engine = names[attr.REPLICA_SPAN], names[attr.VLLM_REQUEST_SPAN]
    assert {s["trace_id"] for s in spans} == {tid}
    assert server["parent_id"] == ""
    stages = (attr.ADMISSION_SPAN, attr.COMPRESSION_SPAN, attr.DECODING_PLAN_SPAN, attr.CASCADE_ATTEMPT_SPAN)
    assert {names[stage]["parent_id"] for stage in stages} == {server["span_id"]}
    assert call["parent_id"] == attempt["span_id"]
    assert replica["parent_id"] == call["span_id"]
    assert engine["parent_id"] == replica["span_id"]
    nodes = cluster.node_ids()
    assert server["resource"][attr.RAY_NODE_ID] == nodes["node_a"]
    assert replica["resource"][attr.RAY_NODE_ID] == nodes["node_b"] != nodes["node_a"]
    assert engine["resource"][attr.PROCESS_PID] == replica["resource"][attr.PROCESS_PID]  # vLLM in the replica
    a = server["attributes"]
    assert (a[attr.RPC_SYSTEM], a[attr.RPC_SERVICE], a[attr.RPC_METHOD]) == (
        "grpc",
        "shardline.v1.Inference",
        "GenerateStream",
    )
    assert a[attr.RPC_GRPC_STATUS_CODE] == 0
    for genai in (a, replica["attributes"]):
        assert genai[attr.GEN_AI_OPERATION_NAME] == "text_completion"
        assert genai[attr.GEN_AI_REQUEST_MODEL] == MODEL
        assert genai[attr.GEN_AI_REQUEST_MAX_TOKENS] == 6
        assert genai[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 6
        assert genai[attr.GEN_AI_USAGE_INPUT_TOKENS] == chunks[-1].usage.prompt_tokens > 0
        assert genai[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["length"]
    assert not any(PROMPT in str(v) for s in spans for v in s["attributes"].values())  # no content by default


def test_a_client_traceparent_is_continued_across_three_processes(cluster):
    provider = TracerProvider(resource=process_resource("client"))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=cluster.collector.endpoint, insecure=True))
    )
    with provider.get_tracer("test").start_as_current_span("client.request") as client_span:
        tid, _ = generate(cluster, max_tokens=3)
    provider.shutdown()
    assert tid == format(client_span.get_span_context().trace_id, "032x")
    spans = cluster.collector.trace(tid, until=lambda s: complete(s) and "client.request" in by_name(s))
    names = by_name(spans)
    assert names[attr.SERVER_SPAN_PREFIX + "GenerateStream"]["parent_id"] == names["client.request"]["span_id"]
    processes = {(s["resource"][attr.PROCESS_ROLE], s["resource"][attr.PROCESS_PID]) for s in spans}
    assert {role for role, _ in processes} == {"client", "router", "replica"} and len(processes) == 3
    # The client (this process) is no node of the cluster; router and replica sit on both.
    served_on = {s["resource"][attr.RAY_NODE_ID] for s in spans if s["resource"][attr.PROCESS_ROLE] != "client"}
    assert served_on == set(cluster.node_ids().values()) and len(served_on) == 2


def test_router_and_replica_serve_prometheus_metrics(cluster):
    generate(cluster, max_tokens=4)
    with Client(cluster.target) as client, pytest.raises(grpc.RpcError):
        client.generate("no-such-model", PROMPT)
    router = scrape(cluster.router_metrics)
    assert 'shardline_requests_total{code="NOT_FOUND",method="Generate"} 1.0' in router
    ok = [
        line
        for line in router.splitlines()
        if line.startswith('shardline_requests_total{code="OK",method="GenerateStream"}')
    ]
    assert ok and float(ok[0].split()[-1]) >= 1
    for metric in (
        "shardline_time_to_first_token_seconds_count",
        "shardline_inter_token_seconds_count",
        "shardline_request_duration_seconds_count",
        "shardline_output_tokens_total",
    ):
        assert f"{metric}{{" in router
    replica = cluster.replica_metrics()
    assert f'shardline_replica_ongoing_requests{{model="{MODEL}"' in replica
    assert "vllm:num_requests_waiting" in replica  # the engine's own queue, same endpoint
