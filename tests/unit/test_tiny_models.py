import hashlib
import json

from shardline.models.tiny import RECIPES, TINY_MIXTRAL, build_tiny_models


def digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_rebuild_is_byte_identical(tmp_path):
    first = build_tiny_models(tmp_path / "a")
    second = build_tiny_models(tmp_path / "b")
    for a, b in zip(first, second):
        assert digest(a) == digest(b)


def test_built_models_are_cached(tmp_path):
    (path, _) = build_tiny_models(tmp_path)
    before = (path / "model.safetensors").stat().st_mtime_ns
    build_tiny_models(tmp_path)
    assert (path / "model.safetensors").stat().st_mtime_ns == before


def test_configs_leave_room_for_long_prompts_and_describe_the_moe(tmp_path):
    build_tiny_models(tmp_path)
    for recipe in RECIPES:
        config = json.loads((tmp_path / recipe.name / "config.json").read_text())
        assert config["max_position_embeddings"] >= 16384
    moe = json.loads((tmp_path / TINY_MIXTRAL.name / "config.json").read_text())
    assert (moe["num_local_experts"], moe["num_experts_per_tok"]) == (4, 2)


def test_tokenizer_encodes_any_text_without_unknown_tokens(tmp_path):
    from transformers import AutoTokenizer

    (path, _) = build_tiny_models(tmp_path)
    tok = AutoTokenizer.from_pretrained(str(path))
    text = "naïve façade — 数字 🙂"
    ids = tok(text).input_ids
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text
