"""Greedy agreement between two token sequences (models/agreement.py)."""

import pytest

from shardline.models.agreement import prefix_agreement


@pytest.mark.parametrize(
    "tokens, share",
    [([1, 2, 3, 4], 1.0), ([1, 2, 9, 4], 0.5), ([9, 2, 3, 4], 0.0), ([1, 2], 0.5), ([1, 2, 3, 4, 5], 1.0)],
    ids=["same", "differs-at-2", "differs-at-0", "stops-early", "runs-longer"],
)
def test_agreement_counts_the_reference_tokens_before_the_first_difference(tokens, share):
    assert prefix_agreement([1, 2, 3, 4], tokens) == share


def test_an_empty_reference_agrees():
    assert prefix_agreement([], [7]) == 1.0
