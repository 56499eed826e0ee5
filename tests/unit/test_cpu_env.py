import pytest

from shardline.engine.cpu_env import omp_bind_for


@pytest.mark.parametrize(
    "world, cores, expected",
    [
        (1, [0, 1], "0-1"),
        (2, [0, 1], "0|1"),
        (2, [0, 1, 2, 3], "0-1|2-3"),
        (4, [0, 1], "0|1|0|1"),  # too few cores: ranks share
        (2, [0, 2, 4, 6], "0,2|4,6"),
    ],
)
def test_omp_bind_splits_cores_between_ranks(world, cores, expected):
    assert omp_bind_for(world, cores) == expected
