"""Per-model admission (router/capacity.py): limits from the spec and ready replicas,
typed rejections with retry advice, and the Serve queue bound that backs them."""

import pickle

import pytest

from builders import make_spec
from shardline.errors import ResourceExhausted
from shardline.router.capacity import DEFAULT_RETRY_AFTER_S, MAX_RETRY_AFTER_S, MIN_RETRY_AFTER_S, Capacity
from shardline.serve.app import llm_deployment, serve_queue_bound


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def capacity(ongoing=4, queued=2, routers=1, clock=None):
    spec = make_spec(
        model={
            "replicas": {
                "max_ongoing_requests": ongoing,
                "max_queued_requests": queued,
                "target_ongoing_requests": 1,
                "max": 3,
            }
        },
        router={"port": 0, "replicas": routers},
    )
    return Capacity(spec, clock or Clock())


def test_limit_is_ready_replicas_times_ongoing_plus_queued():
    c = capacity(ongoing=4, queued=2)
    assert [c.limit("tiny-llama", ready) for ready in (0, 1, 2, 3)] == [0, 6, 12, 18]


def test_router_replicas_split_the_limit_rounding_up():
    c = capacity(ongoing=4, queued=1, routers=2)
    assert c.limit("tiny-llama", 1) == 3  # 5 / 2
    assert c.limit("tiny-llama", 2) == 5


def test_requests_beyond_the_limit_are_rejected_naming_value_limit_and_retry_advice():
    c = capacity(ongoing=2, queued=1)
    held = [c.take(["tiny-llama"], {"tiny-llama": 1}) for _ in range(3)]
    with pytest.raises(ResourceExhausted) as info:
        c.take(["tiny-llama"], {"tiny-llama": 1})
    assert info.value.message == (
        "model 'tiny-llama' has 3 requests in flight at this router; its limit is 3 (1 ready replica(s) x "
        "(max_ongoing_requests 2 + max_queued_requests 1)); retry after 1.0 s"
    )
    assert info.value.retry_after_s == DEFAULT_RETRY_AFTER_S
    c.give(held[0], finished=False)
    c.take(["tiny-llama"], {"tiny-llama": 1})  # a freed slot is taken again
    assert c.in_flight["tiny-llama"] == 3


def test_a_new_ready_replica_raises_the_limit_at_once():
    c = capacity(ongoing=1, queued=0)
    c.take(["tiny-llama"], {"tiny-llama": 1})
    with pytest.raises(ResourceExhausted):
        c.take(["tiny-llama"], {"tiny-llama": 1})
    c.take(["tiny-llama"], {"tiny-llama": 2})


def test_message_names_the_router_share():
    c = capacity(ongoing=1, queued=0, routers=2)
    c.take(["tiny-llama"], {"tiny-llama": 2})
    with pytest.raises(
        ResourceExhausted,
        match=r"\(2 ready replica\(s\) x \(max_ongoing_requests 1 \+ "
        r"max_queued_requests 0\) / 2 router replicas\)",
    ):
        c.take(["tiny-llama"], {"tiny-llama": 2})


def test_retry_advice_follows_how_long_requests_take_within_bounds():
    clock = Clock()
    c = capacity(clock=clock)
    for seconds in (4.0, 4.0):
        held = c.take(["tiny-llama"], {"tiny-llama": 1})
        clock.now += seconds
        c.give(held, finished=True)
    assert c.retry_after_s("tiny-llama") == pytest.approx(4.0)
    held = c.take(["tiny-llama"], {"tiny-llama": 1})
    clock.now += 100.0
    c.give(held, finished=False)  # cancelled or failed: says nothing about duration
    assert c.retry_after_s("tiny-llama") == pytest.approx(4.0)
    assert c.retry_after_s() == pytest.approx(4.0)
    held = c.take(["tiny-llama"], {"tiny-llama": 1})
    clock.now += 1000.0
    c.give(held, finished=True)
    assert c.retry_after_s("tiny-llama") == MAX_RETRY_AFTER_S
    fast = capacity(clock=Clock())
    fast.give(fast.take(["tiny-llama"], {"tiny-llama": 1}), finished=True)  # 0 s
    assert fast.retry_after_s("tiny-llama") == MIN_RETRY_AFTER_S


def test_retry_advice_survives_pickling():
    error = pickle.loads(pickle.dumps(ResourceExhausted("full", retry_after_s=2.5)))
    assert (error.message, error.retry_after_s) == ("full", 2.5)


def test_spec_refuses_a_negative_queue():
    from shardline.errors import SpecError

    with pytest.raises(SpecError, match="max_queued_requests"):
        make_spec(model={"replicas": {"max_queued_requests": -1}})


def test_serve_queue_is_bounded_by_the_routers_share_at_max_replicas():
    spec = make_spec(
        model={
            "replicas": {
                "max_ongoing_requests": 4,
                "max_queued_requests": 2,
                "target_ongoing_requests": 1,
                "min": 1,
                "max": 3,
            }
        }
    )
    model = spec.models[0]
    assert serve_queue_bound(model) == 18
    assert serve_queue_bound(model, routers=4) == 5
    assert llm_deployment(model).max_queued_requests == 18
    unqueued = make_spec(
        model={"replicas": {"max_ongoing_requests": 1, "max_queued_requests": 0, "target_ongoing_requests": 1}}
    ).models[0]
    assert serve_queue_bound(unqueued, routers=2) == 1  # Serve takes -1 (unbounded) or >= 1


def test_a_cascade_request_holds_a_slot_on_every_tier_or_none():
    replicas = {"max_ongoing_requests": 1, "max_queued_requests": 0, "target_ongoing_requests": 1}
    spec = make_spec(
        models=[
            {"name": "small", "path": "/m/s", "replicas": replicas},
            {"name": "large", "path": "/m/l", "replicas": replicas},
        ],
        policies={"cascades": [{"name": "auto", "tiers": ["small", "large"]}]},
    )
    c = Capacity(spec, Clock())
    ready = {"small": 1, "large": 1}
    c.take(["large"], ready)
    with pytest.raises(ResourceExhausted, match="model 'large'"):
        c.take(["small", "large"], ready)
    assert c.in_flight == {"small": 0, "large": 1}  # the refused cascade took nothing


async def test_serves_own_backpressure_becomes_resource_exhausted():
    from ray.serve.exceptions import BackPressureError

    from shardline.generation import GenerationRequest
    from shardline.serve.deployment_handles import ServeBackend

    class Responses:
        cancelled = False

        def __aiter__(self):
            return self

        async def __anext__(self):
            raise BackPressureError(num_queued_requests=18, max_queued_requests=18)

        def cancel(self):
            self.cancelled = True

    responses = Responses()

    class Handle:  # a DeploymentHandle's shape, as ServeBackend uses it
        def options(self, **_):
            return self

        @property
        def generate(self):
            return self

        def remote(self, _request):
            return responses

    backend = ServeBackend("app", {"tiny-llama": Handle()})
    with pytest.raises(
        ResourceExhausted,
        match=r"model 'tiny-llama': Request dropped due to backpressure "
        r"\(num_queued_requests=18, max_queued_requests=18\)",
    ):
        async for _ in backend.stream("tiny-llama", GenerationRequest("r", "hi", 4)):
            pass
    assert responses.cancelled
