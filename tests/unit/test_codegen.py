"""Generated artifacts must match their sources."""

import filecmp

from shardline.engine.args_list import engine_arg_names
from shardline.rpc_codegen import SOURCE_ROOT, generate
from shardline.spec.engine_args import known_engine_args


def test_grpc_stubs_match_the_protos(tmp_path):
    generate(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert generated
    for rel in generated:
        assert filecmp.cmp(tmp_path / rel, SOURCE_ROOT / rel, shallow=False), f"{rel} drifted: run `make protos`"


def test_engine_args_list_matches_installed_vllm():
    assert known_engine_args() == frozenset(engine_arg_names()), "run `make engine-args`"
