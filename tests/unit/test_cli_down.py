"""`shardline down` and `status` act on the application they name (by --name or by
spec file) and, when the cluster runs no such application, say so, name those that
do run, and exit 1; `down` claims a drain only where the routers confirmed one.
Over a fake `serve.status()`: no Ray."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from shardline.cli import deploy
from shardline.cli.main import main
from shardline.engine.protocol import EngineInfo
from shardline.serve import lifecycle
from shardline.spec.deployment import DeploymentSpec

BENCH_SPEC = str(Path(__file__).resolve().parents[2] / "deployments" / "bench-tp1.yaml")


def app(*deployments: str, router_replicas: int = 1):
    """A fake ApplicationStatus with these deployments (each with 1 RUNNING replica) and our router."""
    replicas = {name: 1 for name in deployments} | {"router": router_replicas}
    return SimpleNamespace(
        status="RUNNING",
        deployments={
            name: SimpleNamespace(status="HEALTHY", replica_states={"RUNNING": n}) for name, n in replicas.items()
        },
    )


@pytest.fixture
def cluster(monkeypatch):
    """The fake cluster's applications (a dict to fill) and the apps `undeploy` removed."""
    apps, removed = {}, []
    monkeypatch.setattr(lifecycle, "attach", lambda address: None)
    monkeypatch.setattr("ray.serve.status", lambda: SimpleNamespace(applications=apps))

    def undeploy(name):
        removed.append(name)
        return lifecycle.Removal(1.5, routers=1, drained=1)

    monkeypatch.setattr(lifecycle, "undeploy", undeploy)
    return SimpleNamespace(apps=apps, removed=removed)


def test_down_without_the_named_app_names_those_that_run_and_removes_nothing(cluster, capsys):
    cluster.apps["shardline-bench"] = app("llm-tiny-llama")
    assert main(["down"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "no application named 'shardline' on this cluster; running: shardline-bench "
        "(pass --name NAME, or the spec file)\n"
    )
    assert cluster.removed == []


def test_down_says_when_no_shardline_application_runs(cluster, capsys):
    cluster.apps["someone-elses"] = SimpleNamespace(status="RUNNING", deployments={"web": None})
    assert main(["down", "--name", "shardline-bench"]) == 1
    assert capsys.readouterr().err == (
        "no application named 'shardline-bench' on this cluster; no Shardline application is running\n"
    )
    assert cluster.removed == []


def test_down_takes_the_application_name_from_a_spec_file(cluster, capsys):
    cluster.apps["shardline-bench"] = app("llm-tiny-llama")
    assert main(["down", BENCH_SPEC]) == 0
    assert cluster.removed == ["shardline-bench"]
    assert capsys.readouterr().out == "shardline-bench: removed after 1.5 s (live streams drained first)\n"


def test_down_refuses_a_name_that_contradicts_the_spec_file(cluster, capsys):
    cluster.apps["shardline-bench"] = app("llm-tiny-llama")
    assert main(["down", BENCH_SPEC, "--name", "shardline"]) == 2
    assert "--name 'shardline' is not the name in" in capsys.readouterr().err
    assert cluster.removed == []


@pytest.mark.parametrize(
    "removal, claim",
    [
        (lifecycle.Removal(2.0, routers=2, drained=2), "(live streams drained first)"),
        (
            lifecycle.Removal(2.0, routers=2, drained=1),
            "(only 1 of 2 router replicas confirmed draining: streams on the others may have been cut)",
        ),
        (
            lifecycle.Removal(2.0, routers=None, drained=0),
            "(its routers could not be asked to drain: live streams may have been cut)",
        ),
        (lifecycle.Removal(2.0, routers=0, drained=0), "(no router replica was running: nothing to drain)"),
    ],
    ids=["all-drained", "some-drained", "not-asked", "no-router"],
)
def test_down_claims_a_drain_only_where_the_routers_confirmed_one(removal, claim):
    assert deploy.removed_line("app", removal) == f"app: removed after 2.0 s {claim}"


def test_undeploy_deletes_even_when_the_routers_cannot_be_asked(monkeypatch):
    deleted = []
    monkeypatch.setattr("ray.serve.status", lambda: SimpleNamespace(applications={"a": app("llm-m")}))

    def no_handle(*args, **kwargs):
        raise KeyError("Deployment(name='router', app='a') does not exist.")

    monkeypatch.setattr("ray.serve.get_deployment_handle", no_handle)
    monkeypatch.setattr("ray.serve.delete", deleted.append)
    monkeypatch.setattr(lifecycle, "stop_ledger_actor", lambda name: deleted.append(f"ledger of {name}"))
    removal = lifecycle.undeploy("a")
    assert deleted == ["a", "ledger of a"] and (removal.routers, removal.drained) == (1, 0)


def test_status_without_the_named_app_names_those_that_run(cluster, capsys):
    cluster.apps.update({"shardline-bench": app("llm-tiny-llama"), "chat": app("llm-kv-small")})
    assert main(["status"]) == 1
    assert capsys.readouterr().err == (
        "no application named 'shardline' on this cluster; running: chat, "
        "shardline-bench (pass --name NAME, or the spec file)\n"
    )


def test_status_shows_the_application_a_spec_file_names(cluster, monkeypatch, capsys):
    cluster.apps["shardline-bench"] = app("llm-tiny-llama")
    monkeypatch.setattr(lifecycle, "router_endpoint", lambda name: lifecycle.Endpoint("10.0.0.1", 50061))
    asked = []

    def engine_reports(app_name, deployments):  # what the engine says it runs: TP=2 -> 2 workers
        asked.append((app_name, deployments))
        return {d: EngineInfo("tiny-llama", 512, 2, 1, worker_pids=(7, 8)) for d in deployments}

    monkeypatch.setattr(lifecycle, "engine_reports", engine_reports)
    assert main(["status", BENCH_SPEC]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "application shardline-bench: RUNNING"
    assert out[3].split() == ["llm-tiny-llama", "HEALTHY", "1/1"]
    assert out[4].split() == ["router", "HEALTHY", "1/1", "10.0.0.1:50061"]
    assert asked == [("shardline-bench", ["llm-tiny-llama"])]
    assert out[5] == "engines (as each reports what it runs):"
    assert out[8].split() == ["tiny-llama", "2", "1", "1", "off", "none", "2", "-"]


def test_status_says_unknown_for_an_engine_that_did_not_answer(cluster, monkeypatch, capsys):
    cluster.apps["shardline-bench"] = app("llm-tiny-llama")
    monkeypatch.setattr(lifecycle, "router_endpoint", lambda name: lifecycle.Endpoint("10.0.0.1", 50061))
    monkeypatch.setattr(lifecycle, "engine_reports", lambda app_name, deployments: dict.fromkeys(deployments))
    assert main(["status", BENCH_SPEC]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == ["tiny-llama"] + ["unknown"] * 7


def test_the_cli_default_application_is_the_specs_default_name():
    assert DeploymentSpec.model_fields["name"].default == deploy.DEFAULT_APP
