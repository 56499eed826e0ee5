"""Autoscaling on the real stack: tiny Llama on vLLM, scaled from zero by the router's
hold, up to two replicas by the engines' own signals, back to one, and to zero once
idle, with every request scored by shardline.outcomes (LOST = CORRUPT = 0, every
request OK).

One app of its own (min 0, max 2). Each replica's engine runs two sequences at once
(`max_num_seqs: 2`), so eight clients leave requests waiting in the engine: the
signal the policy scales on. Delays are seconds, not minutes, to keep the test
short (3.3 minutes on a quiet machine, two engine starts being most of it; 9 under
a load average of 30 from other jobs); the
waits are bounded by generous timeouts only, and nothing is asserted about how long
a phase took.
"""

from __future__ import annotations

import pytest

from live import ROOT, deployed
from shardline.faults.autoscale import autoscale_drill
from shardline.serve.deployment_handles import llm_deployment_name

pytestmark = pytest.mark.integration

APP = "autoscale-it"
MODEL = "tiny-llama"
PHASE_TIMEOUT_S = 600.0
"""Bounds each phase and the router's hold: a replica starts in about 65 s on this
2-core machine when quiet, and took up to 434 s under other people's load."""


@pytest.fixture(scope="module")
def app(ray_cluster, tiny_models):
    data = {
        "name": APP,
        "models": [
            {
                "name": MODEL,
                "path": str(ROOT / ".cache/models/tiny-llama"),
                "max_model_len": 512,
                "engine_args": {"enforce_eager": True, "max_num_seqs": 2},
                "replicas": {
                    "min": 0,
                    "max": 2,
                    "max_ongoing_requests": 8,
                    "target_ongoing_requests": 4,
                    "autoscaling": {
                        "waiting_per_replica": 1,
                        "upscale_delay_s": 2,
                        "downscale_delay_s": 4,
                        "scale_to_zero_delay_s": 5,
                        "hold_timeout_s": PHASE_TIMEOUT_S,
                        "metrics_interval_s": 0.5,
                        "look_back_s": 2,
                    },
                },
            }
        ],
        "router": {"limits": {"default_deadline_s": PHASE_TIMEOUT_S + 60}},
        "telemetry": {"exporter": "off", "metrics": False},
    }
    with deployed(data) as d:
        yield d


async def test_scales_from_zero_up_on_waiting_requests_down_and_to_zero_losing_nothing(app):
    result = await autoscale_drill(
        app.target,
        APP,
        llm_deployment_name(MODEL),
        MODEL,
        concurrency=8,
        trickle=2,
        phase_timeout_s=PHASE_TIMEOUT_S,
        to_zero=True,
    )
    print(result.cold, result.rise, result.fall, result.idle, result.outcomes["verdicts"], sep="\n")
    # From zero: the first request was held while the first replica started, then served.
    assert result.cold["replicas_before"] == 0
    assert result.cold["code"] == "OK"
    # Up: Serve decided on a second replica (it appeared, starting) before it ran.
    assert result.rise["decision_s"] is not None and result.rise["ready_s"] is not None
    assert result.rise["decision_s"] <= result.rise["ready_s"]
    # Down: back to one replica while a trickle of streams kept going; none was cut.
    assert result.fall["down_s"] is not None
    # Idle: the last replica stopped once no request had come for scale_to_zero_delay_s.
    assert result.idle["zero_s"] is not None
    verdicts = result.outcomes["verdicts"]
    assert verdicts["LOST"] == verdicts["CORRUPT"] == 0, result.outcomes
    assert verdicts["OK"] == result.outcomes["requests"], result.outcomes["codes"]
