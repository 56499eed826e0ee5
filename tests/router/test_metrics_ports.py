"""Where the router and the engine replicas serve Prometheus metrics: real sockets.

Fixed ports are what a scraper (the Helm chart's ServiceMonitor) is pointed at.
Several replicas may share a node, so a replica takes the first free port of its
range; when all are taken it fails, saying which setting to raise.
"""

import socket
import urllib.request

import pytest

from shardline.spec import TelemetrySpec
from shardline.telemetry.metrics import MetricsPortsTaken, serve_replica_metrics, serve_router_metrics


def free_run(length: int) -> int:
    """A port p with p .. p + length - 1 all free right now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            base = s.getsockname()[1]
        if base + length > 65535:
            continue
        try:
            held = [bound(base + i) for i in range(length)]
        except OSError:
            continue
        for s in held:
            s.close()
        return base
    raise RuntimeError(f"no {length} consecutive free ports")


def bound(port: int) -> socket.socket:
    s = socket.socket()
    s.bind(("0.0.0.0", port))
    s.listen()
    return s


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def test_the_router_binds_its_fixed_port():
    base = free_run(1)
    assert serve_router_metrics(TelemetrySpec(metrics_port=base)) == base
    assert "shardline_requests" in scrape(base)
    assert serve_router_metrics(TelemetrySpec(metrics=False)) is None


def test_replicas_on_one_node_take_consecutive_ports_and_fail_when_none_is_left():
    base = free_run(2)
    telemetry = TelemetrySpec(replica_metrics_port=base, replica_metrics_ports=2)
    taken = bound(base)  # another replica (or anything) already holds the base port
    try:
        assert serve_replica_metrics(telemetry) == base + 1
        assert "shardline_replica_queue_depth" in scrape(base + 1)
        with pytest.raises(MetricsPortsTaken, match=rf"ports {base}..{base + 1} are all in use on this node"):
            serve_replica_metrics(telemetry)
    finally:
        taken.close()


def test_without_a_fixed_port_a_replica_picks_a_free_one():
    assert serve_replica_metrics(TelemetrySpec()) > 0
