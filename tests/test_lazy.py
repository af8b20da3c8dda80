"""The shared block runner of out-of-core counts (gendex._lazy)."""

import numpy as np
import pytest

from gendex._lazy import block_size, is_dask, map_blocks

da = pytest.importorskip("dask.array", reason="dask is an optional dependency (pip install gendex[dask])")


def _counts(seed=0):
    return np.random.default_rng(seed).poisson(5.0, size=(30, 47)).astype(np.int32)


def _col_stats(block, sl):
    return sl.start, block.sum(axis=0), block.shape[0]


@pytest.mark.parametrize("axis", [0, 1])
def test_blocks_cover_the_matrix_in_order_on_numpy_and_dask(axis):
    x = _counts()
    lazy = da.from_array(x, chunks=(7, 11))
    assert is_dask(lazy) and not is_dask(x)
    for data in (x, lazy):
        out = map_blocks(lambda b, sl: (sl, b.copy()), data, axis=axis, size=10)
        joined = np.concatenate([b for _, b in out], axis=axis)
        np.testing.assert_array_equal(joined, x)
        assert [sl.start for sl, _ in out] == list(range(0, x.shape[axis], 10))
        assert all(type(b) is np.ndarray for _, b in out)


def test_block_size_follows_the_budget():
    assert block_size(1000, n_arrays=8, budget=8 * 8 * 1000 * 25) == 25
    assert block_size(10**9, budget=1) == 1


def test_blocks_run_on_an_active_distributed_client():
    distributed = pytest.importorskip("distributed")
    x = _counts(1)
    lazy = da.from_array(x, chunks=(10, 10))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        out = map_blocks(_col_stats, lazy, axis=1, size=12)
        assert len(client.cluster.workers) == 2
    np.testing.assert_array_equal(np.concatenate([s for _, s, _ in out]), x.sum(axis=0))
