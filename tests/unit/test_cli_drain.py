"""SIGTERM (or Ctrl-C) of a foreground `shardline up` drains the app before the
embedded cluster goes down with the process; a second signal stops at once."""

import signal

from builders import make_spec
from shardline.cli import deploy
from shardline.serve import lifecycle


def test_a_signal_to_up_drains_the_app_then_shuts_serve_down(monkeypatch, capsys):
    calls = []
    removal = lifecycle.Removal(1.5, routers=1, drained=1)
    monkeypatch.setattr(lifecycle, "undeploy", lambda app: calls.append(("undeploy", app)) or removal)
    monkeypatch.setattr("ray.serve.shutdown", lambda: calls.append(("shutdown",)))
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        deploy._drain_and_shut_down(make_spec(rollout={"drain_timeout_s": 12}))
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # a second SIGTERM ends it now
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert calls == [("undeploy", "shardline-test"), ("shutdown",)]
    out = capsys.readouterr().out
    assert "draining (live streams get up to 12 s" in out and "removed after 1.5 s (live streams drained first)" in out
