import grpc

from shardline.errors import InvalidArgument, NotFound
from shardline.grpc_status import to_status


class Wrapper(Exception):
    """Stands in for Ray's RayTaskError, which keeps the replica's error in `cause`."""

    def __init__(self, cause):
        super().__init__("wrapped")
        self.cause = cause


def test_typed_errors_keep_code_and_message():
    assert to_status(NotFound("no such model")) == (grpc.StatusCode.NOT_FOUND, "no such model")


def test_errors_wrapped_by_ray_are_unwrapped():
    assert to_status(Wrapper(InvalidArgument("too long"))) == (grpc.StatusCode.INVALID_ARGUMENT, "too long")


def test_unexpected_errors_are_internal_and_named():
    code, message = to_status(ZeroDivisionError("boom"))
    assert code == grpc.StatusCode.INTERNAL
    assert message == "internal error: ZeroDivisionError: boom"
