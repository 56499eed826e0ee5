"""The committed trained models are exactly what their manifests say."""

import json
from pathlib import Path

import pytest

from shardline.models.train import MANIFEST, TIERS, sha256

TRAINED = Path(__file__).resolve().parents[2] / "models" / "trained"


@pytest.mark.parametrize("tier", [t.name for t in TIERS])
def test_committed_files_match_the_manifest(tier):
    directory = TRAINED / tier
    manifest = json.loads((directory / MANIFEST).read_text())
    files = {p.name for p in directory.iterdir() if p.name != MANIFEST}
    assert files == set(manifest["files"])
    for name, digest in manifest["files"].items():
        assert sha256(directory / name) == digest, f"{tier}/{name} differs from its manifest"
    assert manifest["command"].startswith("shardline models train-tiny")


def test_task_tokenizer_round_trips_a_prompt():
    from shardline.models import tasks
    from shardline.models.train import build_tokenizer

    tok = build_tokenizer()
    item = tasks.items_for_length(0, 1, 120)[0]
    ids = tok.encode(item.prompt).ids
    assert tok.token_to_id("<unk>") not in ids
    assert tok.decode(ids) == item.prompt


def test_score_reads_the_first_four_digits():
    from shardline.models.tasks import Item, score

    item = Item(prompt="", answer="4 8 2 1", facts=2)
    assert score(item, " 4 8 2 1") and score(item, "4821 9")
    assert not score(item, " 4 8 2") and not score(item, "1 2 8 4")
