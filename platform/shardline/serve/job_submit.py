"""`shardline submit`: run `shardline up SPEC` as a Ray job on a remote cluster.

The spec is validated here first, so a bad spec fails before anything is
uploaded. The working directory (default: the current one) is uploaded as the
job's `working_dir`; Ray skips what `.gitignore` lists, and `UPLOAD_EXCLUDES`
keeps the virtual environment, caches and git objects out even without one.
Inside the job `shardline up` sees RAY_ADDRESS (set by Ray for every job), so it
deploys onto that cluster and returns once the router serves; Serve keeps
running after the job ends.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from pathlib import Path

from shardline.errors import ShardlineError
from shardline.serve import ray_auth
from shardline.spec import load_spec

UPLOAD_EXCLUDES = [".git", ".venv", ".cache", "**/__pycache__"]


class JobFailed(ShardlineError):
    """The Ray job did not succeed (its logs were already shown)."""


def up_entrypoint(spec_path: str | Path, working_dir: str | Path, timeout_s: float) -> str:
    """`shardline up <spec relative to working_dir>`; the spec travels with the upload."""
    spec, root = Path(spec_path).resolve(), Path(working_dir).resolve()
    if not spec.is_relative_to(root):
        raise ShardlineError(
            f"{spec_path} is not inside the working directory {root}; "
            "the spec is uploaded with it, so it must be (see --working-dir)"
        )
    return shlex.join(["shardline", "up", spec.relative_to(root).as_posix(), "--timeout", f"{timeout_s:g}"])


def submit(spec_path: str, address: str, working_dir: str, timeout_s: float, log: Callable[[str], None]) -> str:
    """Validate, submit, stream the job's logs until it ends; return the job id."""
    load_spec(spec_path)  # raises SpecError before anything is sent
    entrypoint = up_entrypoint(spec_path, working_dir, timeout_s)
    from ray.job_submission import JobStatus, JobSubmissionClient

    sent_token = ray_auth.use_token_if_available()  # the SDK sends it only in token mode
    try:
        client = JobSubmissionClient(address)
        job_id = client.submit_job(
            entrypoint=entrypoint,
            runtime_env={"working_dir": working_dir, "excludes": UPLOAD_EXCLUDES},
        )
    except Exception as exc:
        if ray_auth.is_auth_failure(exc):
            raise ray_auth.auth_failure(address, sent_token) from None
        raise
    log(f"submitted {job_id}: {entrypoint}\n")
    asyncio.run(_tail(client, job_id, log))
    info = client.get_job_info(job_id)
    if info.status != JobStatus.SUCCEEDED:
        raise JobFailed(f"job {job_id} ended {info.status.value}: {info.message}")
    return job_id


async def _tail(client, job_id: str, log: Callable[[str], None]) -> None:
    async for chunk in client.tail_job_logs(job_id):
        log(chunk)
