"""Signed model manifests: every kind of tampering is refused, by name."""

import pytest

from shardline.cli.main import main
from shardline.errors import IntegrityError
from shardline.security.integrity import MANIFEST, generate_key, sign_model, verify_model


@pytest.fixture
def signed(tmp_path):
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (model / "sub" / "tokenizer.json").write_text("{}")
    key = tmp_path / "signing.key"
    public = generate_key(key)
    sign_model(model, key)
    return model, key, public


def refused(model, public) -> str:
    with pytest.raises(IntegrityError) as info:
        verify_model(model, public)
    return str(info.value)


def test_untouched_model_verifies(signed):
    model, _, public = signed
    assert set(verify_model(model, public)["files"]) == {"config.json", "model.safetensors", "sub/tokenizer.json"}


def test_one_flipped_byte_is_refused(signed):
    model, _, public = signed
    weights = bytearray((model / "model.safetensors").read_bytes())
    weights[1000] ^= 0x01
    (model / "model.safetensors").write_bytes(weights)
    assert "modified file model.safetensors" in refused(model, public)


def test_added_file_is_refused(signed):
    model, _, public = signed
    (model / "sub" / "extra.py").write_text("import os")
    assert "unexpected file sub/extra.py" in refused(model, public)


def test_removed_file_is_refused(signed):
    model, _, public = signed
    (model / "sub" / "tokenizer.json").unlink()
    assert "missing file sub/tokenizer.json" in refused(model, public)


def test_symlink_is_refused(signed, tmp_path):
    model, _, public = signed
    (tmp_path / "outside.json").write_text("{}")
    (model / "link.json").symlink_to(tmp_path / "outside.json")
    assert "symlink link.json refused" in refused(model, public)


def test_edited_manifest_fails_the_signature(signed):
    model, _, public = signed
    text = (model / MANIFEST).read_text()
    (model / MANIFEST).write_text(text.replace('"size": 2', '"size": 3', 1))
    assert "signature does not verify" in refused(model, public)


def test_another_key_fails_the_signature(signed, tmp_path):
    model, _, _ = signed
    other = generate_key(tmp_path / "other.key")
    assert f"signature does not verify with public key {other}" in refused(model, other)


def test_unsigned_directory_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    public = generate_key(tmp_path.parent / f"{tmp_path.name}.key")
    assert f"not signed: {MANIFEST} is missing" in refused(tmp_path, public)


def test_pickle_weights_are_never_signed(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(IntegrityError, match=r"refusing to sign pickle-based weights \['pytorch_model.bin'\]"):
        sign_model(tmp_path / "m", _key(tmp_path))


def test_private_key_file_is_owner_only(tmp_path):
    key = tmp_path / "k"
    generate_key(key)
    assert key.stat().st_mode & 0o777 == 0o600


def test_cli_keygen_sign_verify_round_trip(signed, tmp_path, capsys):
    model, _, _ = signed
    key = tmp_path / "cli.key"
    assert main(["keygen", str(key)]) == 0
    assert main(["sign", str(model), "--key", str(key)]) == 0
    assert main(["verify", str(model), "--public-key", f"{key}.pub"]) == 0
    (model / "config.json").write_text("{}")
    assert main(["verify", str(model), "--public-key", f"{key}.pub"]) == 2
    assert "modified file config.json" in capsys.readouterr().err


def _key(tmp_path):
    key = tmp_path / "k.key"
    generate_key(key)
    return key


def test_keygen_never_overwrites_a_key(tmp_path):
    key = _key(tmp_path)
    with pytest.raises(IntegrityError, match="exists; refusing to overwrite a signing key"):
        generate_key(key)
