"""What `shardline status` and the demo print for a model's engine report."""

from shardline.cli.engine_view import HEADERS, UNKNOWN, engine_line, engine_row
from shardline.engine.protocol import EngineInfo
from shardline.v1 import inference_pb2 as pb


def test_an_expert_parallel_engine_prints_its_experts_per_rank():
    info = EngineInfo("m", 256, 2, 1, 1, True, 2, "", 0, (5, 6), 4, (2, 2))
    assert engine_row("m", info) == ("m", 2, 1, 1, "on (2)", "none", 2, "2/2 of 4")
    assert engine_line("m", info) == "m: TP=2 PP=1 DP=1 EP=on (2) quantization=none workers=2 experts/rank=2/2 of 4"


def test_list_models_replies_print_alike_and_unreported_ones_are_unknown():
    reported = pb.ModelInfo(name="m", reported=True, tensor_parallel_size=1, pipeline_parallel_size=2)
    reported.data_parallel_size, reported.workers, reported.quantization = 1, 2, "shardline-int8"
    assert engine_row("m", reported) == ("m", 1, 2, 1, "off", "shardline-int8", 2, "-")
    assert engine_row("m", pb.ModelInfo(name="m", tensor_parallel_size=2)) == ("m", *[UNKNOWN] * (len(HEADERS) - 1))
    assert engine_row("m", None)[1] == UNKNOWN
    assert engine_line("m", None) == "m: engine report unknown (no replica answered yet)"
