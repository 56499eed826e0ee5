"""Ray's token authentication for clients given an explicit cluster address.

Ray 2.60 finds its token the way its C++ `AuthenticationTokenLoader` does:
`RAY_AUTH_TOKEN` (the token), else `RAY_AUTH_TOKEN_PATH` (a file), else
`~/.ray/auth_token`. `ray start --head` turns token auth on when a token exists
(any earlier embedded `ray.init()`, e.g. `make demo`, writes `~/.ray/auth_token`),
and so does `ray.init()` for a cluster it finds by itself ("auto"). But a client
given an explicit address (`ray.init(address=...)`, the Job Submission SDK) sends
the token only when `RAY_AUTH_MODE=token` is set, and fails with `InvalidAuthToken`
otherwise. So when RAY_AUTH_MODE is unset and a token is available, we set it for
this process, as Ray itself does for "auto" (`maybe_enable_token_auth_if_token_available`).
A cluster without token auth ignores the token, so sending one is safe.
"""

from __future__ import annotations

import os

from shardline.errors import ShardlineError

MODE_VAR = "RAY_AUTH_MODE"
TOKEN_SOURCES = "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"


class RayAuthError(ShardlineError):
    """The cluster asked for Ray's auth token and this client has none that it accepts."""


def use_token_if_available() -> bool:
    """Send Ray's token to the cluster when one is available and RAY_AUTH_MODE is unset.

    Returns whether this process authenticates with a token. An explicit
    RAY_AUTH_MODE (`token` or `disabled`) is respected as it is.
    """
    mode = os.environ.get(MODE_VAR)
    if mode is not None:
        return mode.lower() == "token"
    from ray._raylet import AuthenticationTokenLoader, Config

    if not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        return False
    os.environ[MODE_VAR] = "token"
    Config.initialize("")  # Ray caches its config: re-read it so this process sees the mode
    return True


def is_auth_failure(exc: BaseException | None) -> bool:
    """Whether `exc` or its cause is the cluster refusing our token. `ray.init` raises
    ConnectionError from a RuntimeError whose text holds the AuthenticationError."""
    from ray.exceptions import AuthenticationError

    while exc is not None:
        if isinstance(exc, AuthenticationError) or "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def auth_failure(address: str, sent_token: bool) -> RayAuthError:
    """One line that says what to run."""
    if sent_token:
        problem = f"the Ray cluster at {address} refused the auth token found in {TOKEN_SOURCES}"
    else:
        problem = f"the Ray cluster at {address} requires Ray's auth token and none was found in {TOKEN_SOURCES}"
    return RayAuthError(
        f"{problem}: on the head node run `ray get-auth-token`, then here "
        "`export RAY_AUTH_TOKEN=<that token>` and run this command again"
    )
