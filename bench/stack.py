"""Deploys a spec on an embedded Ray cluster for a benchmark, and tears it down."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_TIMEOUT_S = 600


@contextlib.contextmanager
def deployed(spec_path: Path) -> Iterator[str]:
    """Yields the router's target ("host:port") while the spec is served."""
    import ray
    from ray import serve

    from shardline.serve import lifecycle
    from shardline.spec import load_spec

    spec = load_spec(spec_path)
    lifecycle.connect(None, spec)
    try:
        endpoint = lifecycle.deploy(spec, DEPLOY_TIMEOUT_S)
        yield f"127.0.0.1:{endpoint.port}"
    finally:
        serve.shutdown()
        ray.shutdown()
