"""Ray's token auth on the client side, without a cluster (the real one: tests/e2e/test_ray_auth.py)."""

import pytest
from ray.exceptions import AuthenticationError

from shardline.serve import ray_auth


@pytest.mark.parametrize("mode,expected", [("token", True), ("TOKEN", True), ("disabled", False)])
def test_an_explicit_auth_mode_is_respected(monkeypatch, mode, expected):
    monkeypatch.setenv("RAY_AUTH_MODE", mode)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "f" * 32)
    assert ray_auth.use_token_if_available() is expected
    assert ray_auth.os.environ["RAY_AUTH_MODE"] == mode


def test_the_refusal_is_found_under_ray_inits_connection_error():
    # What ray.init(address=...) raises: ConnectionError from RuntimeError("... AuthenticationError ...").
    try:
        try:
            raise RuntimeError("Failed to connect to GCS: RPC error: InvalidAuthToken: token is missing")
        except RuntimeError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from inner
    except ConnectionError as exc:
        assert ray_auth.is_auth_failure(exc)
    assert ray_auth.is_auth_failure(AuthenticationError("Authentication required: Unauthorized"))
    assert not ray_auth.is_auth_failure(ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379"))


def test_the_failure_is_one_line_naming_what_to_run():
    for sent in (False, True):
        message = str(ray_auth.auth_failure("10.0.0.1:6379", sent_token=sent))
        assert "\n" not in message
        assert "10.0.0.1:6379" in message and "`ray get-auth-token`" in message
        assert "`export RAY_AUTH_TOKEN=<that token>`" in message
    assert "refused the auth token" in str(ray_auth.auth_failure("h:1", sent_token=True))
