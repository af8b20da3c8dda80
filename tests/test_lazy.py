"""The shared block runner of out-of-core counts (gendex._lazy)."""

import numpy as np
import pytest

from gendex._lazy import block_size, is_dask, map_blocks, map_chunks, sum_cols, sum_rows

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


def test_blocks_run_on_an_active_distributed_client(dask_cluster):
    distributed = pytest.importorskip("distributed")
    x = _counts(1)
    lazy = da.from_array(x, chunks=(10, 10))
    with distributed.Client(dask_cluster) as client:
        out = map_blocks(_col_stats, lazy, axis=1, size=12)
        grid = map_chunks(lambda b, r, c: (r, c, b.sum(axis=0)), lazy)
        assert len(client.cluster.workers) == 2
    np.testing.assert_array_equal(np.concatenate([s for _, s, _ in out]), x.sum(axis=0))
    np.testing.assert_array_equal(sum_cols(grid, x.shape[1], lambda r: r[2]), x.sum(axis=0))


def test_chunks_are_read_as_stored_and_summed_in_order():
    x = _counts(2)
    lazy = da.from_array(x, chunks=(7, 11))
    grid = map_chunks(lambda b, r, c: (r, c, b.copy()), lazy)
    assert len(grid) == 5 and len(grid[0]) == 5  # 30 = 4 x 7 + 2, 47 = 4 x 11 + 3: nothing rechunked
    for i, row in enumerate(grid):
        for j, (r, c, block) in enumerate(row):
            assert (r.start, c.start) == (7 * i, 11 * j)
            np.testing.assert_array_equal(block, x[r, c])
    sums = map_chunks(lambda b, r, c: (b.sum(axis=1), b.sum(axis=0)), lazy)
    np.testing.assert_array_equal(sum_rows(sums, 30, lambda s: s[0]), x.sum(axis=1))
    np.testing.assert_array_equal(sum_cols(sums, 47, lambda s: s[1]), x.sum(axis=0))
    numpy_grid = map_chunks(lambda b, r, c: (b.sum(axis=1), b.sum(axis=0)), x)  # NumPy: blocks of samples
    np.testing.assert_array_equal(sum_cols(numpy_grid, 47, lambda s: s[1]), x.sum(axis=0))


def test_sparse_chunks_are_densified():
    sparse = pytest.importorskip("scipy.sparse")
    x = _counts(3)
    lazy = da.from_array(x, chunks=(7, 11)).map_blocks(sparse.csr_matrix, dtype=x.dtype)
    out = map_blocks(lambda b, sl: (type(b), b.sum(axis=0)), lazy, axis=1, size=20)
    assert all(t is np.ndarray for t, _ in out)
    np.testing.assert_array_equal(np.concatenate([s for _, s in out]), x.sum(axis=0))
