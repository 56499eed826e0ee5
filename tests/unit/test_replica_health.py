"""Replica health settings (`models[].health`) and the replica's fail-stop exit."""

import subprocess
import sys
import textwrap

import psutil
import pytest

from builders import make_spec, spec_dict
from shardline.errors import SpecError
from shardline.serve.app import llm_deployment
from shardline.spec import validate_spec
from waiting import eventually


def test_health_defaults_leave_room_for_a_slow_probe():
    health = make_spec().models[0].health
    assert (health.period_s, health.probe_timeout_s, health.timeout_s, health.stall_timeout_s) == (10, 10, 60, None)


def test_serve_timeout_must_exceed_the_probe_timeout():
    with pytest.raises(SpecError, match=r"timeout_s \(5\) must be greater than probe_timeout_s \(8\)"):
        validate_spec(spec_dict(model={"health": {"probe_timeout_s": 8, "timeout_s": 5}}))


@pytest.mark.parametrize(
    "field, value", [("period_s", 0.1), ("probe_timeout_s", 0), ("stall_timeout_s", -1), ("timeout_s", 4000)]
)
def test_health_bounds_are_checked(field, value):
    with pytest.raises(SpecError, match=f"health.{field}"):
        validate_spec(spec_dict(model={"health": {field: value}}))


def test_serve_health_check_options_come_from_the_spec():
    model = make_spec(model={"health": {"period_s": 1.5, "probe_timeout_s": 2, "timeout_s": 7}}).models[0]
    config = llm_deployment(model)._deployment_config
    assert (config.health_check_period_s, config.health_check_timeout_s) == (1.5, 7)


def test_a_replica_leaving_kills_its_engine_processes_even_stopped_ones(tmp_path):
    """exit_replica in a stand-in replica process whose 'engine' child is SIGSTOPped."""
    script = textwrap.dedent("""
        import os, signal, subprocess, sys
        from shardline.serve.llm_server import exit_replica
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        os.kill(child.pid, signal.SIGSTOP)
        print(child.pid, flush=True)
        exit_replica("test: engine stalled")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    child = int(done.stdout.split()[0])
    eventually(lambda: _gone(child), message=f"engine stand-in {child} outlived its replica")
    assert "leaves: test: engine stalled" in done.stderr


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
