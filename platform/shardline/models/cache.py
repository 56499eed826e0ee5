"""Model directories built once under a cache folder, atomically, with a marker.

A model is built into a staging directory beside its target and renamed into place;
a marker file beside it (not inside: a signed directory must hold only what its
manifest lists) records the fingerprint it was built from. A target whose marker
matches the fingerprint is current; anything else is rebuilt.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def marker(target: Path) -> Path:
    return target.parent / f".{target.name}.built.json"


def is_built(target: Path, fingerprint: dict) -> bool:
    path = marker(target)
    # Compared as JSON: tuples in a fingerprint come back from the marker as lists.
    return target.is_dir() and path.is_file() and json.loads(path.read_text()) == json.loads(json.dumps(fingerprint))


def build_atomically(target: Path, fingerprint: dict, write: Callable[[Path], None]) -> None:
    """Runs `write(staging)`, then replaces `target` with the staging directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    marker(target).unlink(missing_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    marker(target).write_text(json.dumps(fingerprint, sort_keys=True) + "\n")
