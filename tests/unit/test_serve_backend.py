"""ServeBackend turns Ray's failures into the router's typed errors."""

import pytest
from ray.exceptions import ActorUnavailableError, RayTaskError

from shardline.errors import InvalidArgument, ReplicaLost
from shardline.generation import GenerationDelta, GenerationRequest
from shardline.serve.deployment_handles import ServeBackend

REQUEST = GenerationRequest("r1", "hi", max_tokens=4)


class Responses:
    def __init__(self, deltas, error):
        self._deltas, self._error, self.cancelled = list(deltas), error, False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._deltas:
            return self._deltas.pop(0)
        if self._error:
            raise self._error
        raise StopAsyncIteration

    def cancel(self):
        self.cancelled = True


class Handle:
    """Just what ServeBackend uses of a DeploymentHandle."""

    def __init__(self, responses):
        self.responses = responses
        self.generate = self

    def options(self, **_):
        return self

    def remote(self, _request):
        return self.responses


async def collect(backend):
    got = []
    async for delta in backend.stream("m", REQUEST):
        got.append(delta)
    return got


async def test_a_dead_replica_becomes_replica_lost_after_the_deltas_it_sent():
    responses = Responses([GenerationDelta("a", [1])], ActorUnavailableError("Actor is unavailable.", b"\0" * 16))
    backend = ServeBackend("app", {"m": Handle(responses)})
    got = []
    with pytest.raises(ReplicaLost, match="replica of 'm' was lost mid-request: ActorUnavailableError"):
        async for delta in backend.stream("m", REQUEST):
            got.append(delta)
    assert [d.token_ids for d in got] == [[1]]
    assert responses.cancelled  # the call is cancelled either way


async def test_a_typed_error_raised_in_the_replica_arrives_as_itself():
    wrapped = RayTaskError("generate", "traceback", InvalidArgument("prompt has 9000 tokens; limit 2047"))
    backend = ServeBackend("app", {"m": Handle(Responses([], wrapped))})
    with pytest.raises(InvalidArgument, match="9000 tokens"):
        await collect(backend)
