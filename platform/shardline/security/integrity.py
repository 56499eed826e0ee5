"""Model integrity: a signed manifest of every file in a model directory.

`sign_model` writes `shardline-manifest.json` (sha256 and size of every file) and
`shardline-manifest.sig` (an Ed25519 signature over the manifest's exact bytes).
`verify_model` checks the signature against a public key, then the directory
against the manifest: any extra, missing or modified file, and any symlink, is
refused. Weights must be safetensors: pickle-based formats (`.bin`, `.pt`, ...)
can run code when loaded, so they are refused at signing and at verification.

Public keys travel as text (base64 of the raw 32-byte key) so a spec can carry
them inline: the replica that verifies needs no key file on its node.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shardline.errors import IntegrityError

MANIFEST = "shardline-manifest.json"
SIGNATURE = "shardline-manifest.sig"
FORMAT = "shardline-manifest/1"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
"""Weight formats that unpickle on load; never signed, never loaded."""
_CHUNK = 1 << 20


def generate_key(private_path: str | os.PathLike) -> str:
    """Writes a new Ed25519 private key (PEM, mode 0600); returns its public key text."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise IntegrityError(f"{private_path} exists; refusing to overwrite a signing key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_key_text(key.public_key())


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from its text form; raises ValueError quoting what is wrong."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise ValueError(f"public key {text!r} is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"public key {text!r} decodes to {len(raw)} bytes; an Ed25519 key has 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign_model(model_dir: str | os.PathLike, private_key_path: str | os.PathLike) -> dict:
    """Hashes every file under `model_dir`, writes the manifest and its signature."""
    root = Path(model_dir)
    files = _scan(root)
    refused = sorted(name for name in files if name.endswith(PICKLE_SUFFIXES))
    if refused:
        raise IntegrityError(f"{root}: refusing to sign pickle-based weights {refused}; convert them to safetensors")
    manifest = {"format": FORMAT, "files": {name: _digest(root / name) for name in sorted(files)}}
    body = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    signature = _load_private_key(private_key_path).sign(body)
    (root / MANIFEST).write_bytes(body)
    (root / SIGNATURE).write_text(base64.b64encode(signature).decode() + "\n")
    return manifest


def verify_model(model_dir: str | os.PathLike, public_key: str) -> dict:
    """Checks the signature, then every file; raises IntegrityError listing all problems."""
    root = Path(model_dir)
    manifest = _signed_manifest(root, parse_public_key(public_key))
    expected: dict[str, dict] = manifest["files"]
    present = _scan(root)
    problems = [f"unexpected file {name}" for name in sorted(present - expected.keys())]
    problems += [f"missing file {name}" for name in sorted(expected.keys() - present)]
    for name in sorted(present & expected.keys()):
        if _digest(root / name) != expected[name]:
            problems.append(f"modified file {name} (sha256 differs from the manifest)")
    problems += [f"pickle-based weights {name}" for name in sorted(present) if name.endswith(PICKLE_SUFFIXES)]
    if problems:
        raise IntegrityError(f"{root} does not match its signed manifest: " + "; ".join(problems))
    return manifest


def _signed_manifest(root: Path, key: Ed25519PublicKey) -> dict:
    try:
        body = (root / MANIFEST).read_bytes()
        signature = base64.b64decode((root / SIGNATURE).read_text().strip(), validate=True)
    except FileNotFoundError as exc:
        raise IntegrityError(f"{root} is not signed: {Path(exc.filename).name} is missing") from None
    except binascii.Error:
        raise IntegrityError(f"{root / SIGNATURE} is not base64") from None
    try:
        key.verify(signature, body)
    except InvalidSignature:
        raise IntegrityError(
            f"{root / MANIFEST}: signature does not verify with public key {public_key_text(key)}"
        ) from None
    manifest = json.loads(body)
    if manifest.get("format") != FORMAT:
        raise IntegrityError(f"{root / MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def _scan(root: Path) -> set[str]:
    """Relative paths of the regular files under root, manifest excluded. Symlinks
    are refused: they could point the loader outside what was signed."""
    if not root.is_dir():
        raise IntegrityError(f"{root} is not a directory")
    names: set[str] = set()
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise IntegrityError(f"{root}: symlink {path.relative_to(root)} refused (it may point outside the model)")
        if path.is_file():
            names.add(path.relative_to(root).as_posix())
    return names - {MANIFEST, SIGNATURE}


def _digest(path: Path) -> dict:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return {"sha256": sha.hexdigest(), "size": path.stat().st_size}


def _load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise IntegrityError(f"{path} is a {type(key).__name__}, not an Ed25519 private key")
    return key
