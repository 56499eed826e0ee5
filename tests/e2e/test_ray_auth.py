"""`shardline` against a plain `ray start --head` with Ray 2.60's token auth, as a new
user runs it: the token is in `~/.ray/auth_token` and no RAY_AUTH_* variable is set.

Ray's own clients given an explicit address send the token only with
`RAY_AUTH_MODE=token`; `shardline status/up/down --address` find it themselves
(serve/ray_auth.py). Without a token, the error is one line that says what to run.
"""

from __future__ import annotations

import pytest
from local_cluster import BIN, start, stop

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    cluster = start(num_cpus=1, plain=True)
    try:
        yield cluster
    finally:
        stop(cluster)


def test_ray_start_turned_token_auth_on_and_plain_ray_init_is_refused(cluster):
    """The negative control: this cluster does refuse a client that does not send the
    token, which is what `ray.init(address=...)` does without RAY_AUTH_MODE."""
    assert not any(name.startswith("RAY_AUTH") for name in cluster.env)
    run = cluster.run(str(BIN / "python"), "-c", f"import ray; ray.init(address={cluster.gcs!r})")
    assert run.returncode != 0
    assert "InvalidAuthToken" in run.stderr, run.stderr[-2000:]


def test_status_with_an_address_finds_the_token_itself(cluster):
    run = cluster.run(str(BIN / "shardline"), "status", "--address", cluster.gcs)
    # Connected: the cluster answered that nothing is deployed (not InvalidAuthToken).
    assert run.returncode == 1, run.stderr[-2000:]
    assert "no application named 'shardline' on this cluster" in run.stderr, run.stderr[-2000:]
    assert "InvalidAuthToken" not in run.stderr
    down = cluster.run(str(BIN / "shardline"), "down", "--address", cluster.gcs)
    assert "no application named 'shardline' on this cluster" in down.stderr, down.stderr[-2000:]


def test_without_a_token_the_error_is_one_line_that_says_what_to_run(cluster, tmp_path):
    env = {**cluster.env, "HOME": str(tmp_path)}  # a client machine without the head's token
    run = cluster.run(str(BIN / "shardline"), "status", "--address", cluster.gcs, env=env)
    assert run.returncode == 2  # a ShardlineError, not a traceback
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert f"the Ray cluster at {cluster.gcs} requires Ray's auth token" in line
    assert "`ray get-auth-token`" in line and "`export RAY_AUTH_TOKEN=<that token>`" in line
    assert "Traceback" not in run.stderr
