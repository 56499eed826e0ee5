"""`shardline up` on an embedded cluster fails fast, naming the replica's own error."""

import subprocess
import sys


def test_up_reports_a_missing_model_directory_and_exits_nonzero(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"name: bad\nmodels:\n  - name: m\n    path: {tmp_path / 'nope'}\nrouter: {{port: 0}}\n")
    run = subprocess.run([sys.executable, "-m", "shardline.cli.main", "up", str(spec), "--timeout", "240"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "DEPLOY_FAILED" in run.stderr
    assert f"no Hugging Face model at {tmp_path / 'nope'} (no config.json)" in run.stderr
