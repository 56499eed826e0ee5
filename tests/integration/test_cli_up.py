"""`shardline up` on an embedded cluster fails fast, naming the replica's own error."""

import shutil
import subprocess
import sys
from pathlib import Path

from shardline.security.integrity import generate_key, sign_model

KV_SMALL = Path(__file__).resolve().parents[2] / "models" / "trained" / "kv-small"


def up(spec: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shardline.cli.main", "up", str(spec), "--timeout", "240"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_up_reports_a_missing_model_directory_and_exits_nonzero(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"name: bad\nmodels:\n  - name: m\n    path: {tmp_path / 'nope'}\nrouter: {{port: 0}}\n")
    run = up(spec)
    assert run.returncode == 2
    assert "DEPLOY_FAILED" in run.stderr
    assert f"no Hugging Face model at {tmp_path / 'nope'} (no config.json)" in run.stderr


def test_up_refuses_a_tampered_signed_model(tmp_path):
    model = shutil.copytree(KV_SMALL, tmp_path / "kv-small")
    public = generate_key(tmp_path / "k")
    sign_model(model, tmp_path / "k")
    weights = bytearray((model / "model.safetensors").read_bytes())
    weights[-1] ^= 0x01
    (model / "model.safetensors").write_bytes(weights)
    spec = tmp_path / "tampered.yaml"
    spec.write_text(
        f"name: tampered\nmodels:\n  - name: m\n    path: {model}\n"
        f"    integrity: {{public_key: {public}}}\nrouter: {{port: 0}}\n"
    )
    run = up(spec)
    assert run.returncode == 2
    assert "DEPLOY_FAILED" in run.stderr
    assert "modified file model.safetensors (sha256 differs from the manifest)" in run.stderr
