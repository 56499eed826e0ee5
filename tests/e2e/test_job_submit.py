"""The `ray job submit` door, end to end, against a real `ray start --head` cluster.

1. `ray job submit --working-dir . -- shardline up deployments/job-smoke.yaml`:
   the job deploys and returns, Serve keeps serving, a gRPC client streams
   tokens from the router, `shardline down` removes the deployment.
2. `shardline submit` does the same through the Job Submission SDK and tails the
   job's logs.
3. `shardline render serve-config` + `serve deploy`: the same application from a
   Serve config file.
The spec is the smallest that serves a trained model (kv-small, one worker).
"""

from __future__ import annotations

import re

import grpc
import pytest
from local_cluster import BIN, LocalCluster, start, stop

from shardline.client import Client
from waiting import Not, eventually

SPEC = "deployments/job-smoke.yaml"
APP = "shardline-job"
PROMPT = "The code of amber is 4 8 2 1 . Question : what is the code of amber ? Answer :"
SERVING = re.compile(r"shardline-job: SERVING on (\S+)")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    cluster = start(num_cpus=4)  # kv-small replica 1 + worker 1 + router 1
    try:
        yield cluster
    finally:
        stop(cluster)


def streams_tokens(target: str) -> str:
    with Client(target) as client:
        chunks = list(client.stream("kv-small", PROMPT, max_tokens=8, temperature=0, timeout=60))
    assert chunks and chunks[-1].finish_reason
    assert chunks[-1].usage.completion_tokens > 0
    return "".join(c.text for c in chunks)


def down(cluster: LocalCluster, target: str) -> None:
    run = cluster.run(str(BIN / "shardline"), "down", "--address", cluster.gcs, "--name", APP)
    assert run.returncode == 0, run.stderr
    assert f"{APP}: removed" in run.stdout
    with Client(target) as client, pytest.raises(grpc.RpcError):
        client.health(timeout=5)


def test_ray_job_submit_runs_shardline_up_and_leaves_serve_running(cluster):
    run = cluster.run(
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        cluster.dashboard,
        "--working-dir",
        ".",
        "--",
        "shardline",
        "up",
        SPEC,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "succeeded" in run.stdout + run.stderr
    (target,) = SERVING.findall(run.stdout)
    # The job has ended; Serve still serves.
    streams_tokens(target)
    uploaded = [p for p in cluster.working_dir_packages() if (p / SPEC).is_file()]
    assert uploaded and all((p / "models/trained/kv-small/config.json").is_file() for p in uploaded)
    # (.cache/shardline/traces may appear: the job's own span store, made after upload)
    assert not any((p / ".venv").exists() or (p / ".cache" / "models").exists() for p in uploaded)
    down(cluster, target)


def test_shardline_submit_tails_the_job_logs_and_serves(cluster):
    run = cluster.run(str(BIN / "shardline"), "submit", SPEC, "--address", cluster.dashboard, "--timeout", "240")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "submitted raysubmit_" in run.stdout
    assert "RUNNING | llm-kv-small: 1 RUNNING" in run.stdout  # `up`'s progress, tailed
    assert re.search(r"job raysubmit_\w+ succeeded", run.stdout)
    (target,) = SERVING.findall(run.stdout)
    streams_tokens(target)
    down(cluster, target)


def test_rendered_serve_config_deploys_with_serve_deploy(cluster, tmp_path):
    config = tmp_path / "serve.yaml"
    assert cluster.run(str(BIN / "shardline"), "render", "serve-config", SPEC, "-o", str(config)).returncode == 0
    run = cluster.run(str(BIN / "serve"), "deploy", str(config), "--address", cluster.dashboard)
    assert run.returncode == 0, run.stderr
    target = wait_for_router(cluster, timeout_s=240)
    streams_tokens(target)
    down(cluster, target)


def wait_for_router(cluster: LocalCluster, timeout_s: float) -> str:
    def serving_target():
        run = cluster.run(str(BIN / "shardline"), "status", "--address", cluster.gcs, "--name", APP, timeout=120)
        found = re.search(r"^router\s+HEALTHY\s+1/1\s+(\S+)", run.stdout, re.M)
        if found and _serving(found.group(1)):
            return found.group(1)
        return Not(f"shardline status said:\n{run.stdout}\n{run.stderr}")

    return eventually(serving_target, timeout_s=timeout_s, interval_s=3, message="router serving")


def _serving(target: str) -> bool:
    try:
        with Client(target) as client:
            return client.health() == "SERVING"
    except grpc.RpcError:
        return False
