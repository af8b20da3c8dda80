"""Out-of-core counts: dask arrays computed in blocks on whatever scheduler the caller has.

gendex never starts a cluster. A count matrix that is a dask array (e.g. from
:func:`anndata.experimental.read_lazy` on zarr or h5ad) is cut into blocks of whole genes (all samples) or whole
samples (all genes); each block becomes one task that turns it into a NumPy array, runs a pure kernel on it and
returns small per-gene or per-sample results. :func:`dask.compute` runs the tasks on the active scheduler: the
threaded one by default, a :class:`dask.distributed.Client` when one is active. Only the blocks in flight are in
memory, so the block size sets the memory per worker thread.

dask is an optional dependency (``pip install gendex[dask]``): nothing here imports it unless the counts are
already a dask array.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

#: default memory for one block's working set (all arrays a kernel makes from it), in bytes
BLOCK_BYTES = int(os.environ.get("GENDEX_BLOCK_BYTES", 256 * 2**20))


def is_dask(x: Any) -> bool:
    """Whether ``x`` is a dask array, anndata's views of one included (checked without importing dask)."""
    array = sys.modules.get("dask.array")
    return array is not None and isinstance(x, array.Array)


def block_size(n_other: int, *, n_arrays: int = 8, itemsize: int = 8, budget: int | None = None) -> int:
    """How many genes (or samples) fit in one block.

    A block of ``size`` genes with ``n_other`` samples each is assumed to need ``n_arrays`` float arrays of its
    shape while a kernel runs (``budget`` bytes in all; :data:`BLOCK_BYTES`, or ``GENDEX_BLOCK_BYTES``, by default).
    """
    budget = BLOCK_BYTES if budget is None else int(budget)
    return max(1, int(budget // max(1, n_other * n_arrays * itemsize)))


def _slices(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def map_blocks(
    func: Callable[[np.ndarray, slice], T],
    x: Any,
    *,
    axis: int = 1,
    size: int | None = None,
    n_arrays: int = 8,
) -> list[T]:
    """Run ``func(block, where)`` on blocks of ``x`` along ``axis`` and return the results in order.

    ``axis=1`` cuts whole genes (each block holds every sample), ``axis=0`` whole samples. ``block`` is a NumPy
    array and ``where`` the slice it covers along ``axis``. ``x`` may be a dask array (one task per block, computed
    on the active scheduler) or anything NumPy-like (blocks are computed here, one at a time). ``size`` defaults
    to :func:`block_size` for ``n_arrays`` float64 working arrays.
    """
    n_other = x.shape[1 - axis]
    size = size or block_size(n_other, n_arrays=n_arrays)
    return map_slices(func, x, _slices(x.shape[axis], size), axis=axis)


def map_slices(func: Callable[[np.ndarray, slice], T], x: Any, where: Sequence[slice], *, axis: int = 1) -> list[T]:
    """:func:`map_blocks` on given consecutive slices ``where`` that cover ``x`` along ``axis`` (any sizes)."""
    if not is_dask(x):
        return [func(as_numpy(x[:, sl] if axis == 1 else x[sl]), sl) for sl in where]
    import dask

    chunks = {axis: tuple(sl.stop - sl.start for sl in where), 1 - axis: -1}
    blocks = x.rechunk(chunks).to_delayed().ravel()
    call = dask.delayed(_call, pure=True)
    tasks = [call(func, block, sl) for block, sl in zip(blocks, where, strict=True)]
    return list(dask.compute(*tasks))


def _call(func: Callable[[np.ndarray, slice], T], block: Any, sl: slice) -> T:
    return func(as_numpy(block), sl)


def as_numpy(block: Any) -> np.ndarray:
    """A block as a dense NumPy array (sparse chunks, e.g. of a lazily read CSR matrix, are densified)."""
    return block.toarray() if hasattr(block, "toarray") else np.asarray(block)


def concat(parts: Sequence[np.ndarray], axis: int = 0) -> np.ndarray:
    """Join per-block results (an empty list gives an empty float array)."""
    return np.concatenate(list(parts), axis=axis) if len(parts) else np.empty(0)


def map_chunks(func: Callable[[np.ndarray, slice, slice], T], x: Any) -> list[list[T]]:
    """Run ``func(block, rows, cols)`` on every stored chunk of ``x`` and return the results as a grid.

    Unlike :func:`map_blocks` nothing is rechunked: each task reads one chunk as it is stored (a zarr or h5ad
    chunk), so a kernel whose results add up over chunks (sums, counts, minima) costs one read of the data.
    ``result[i][j]`` belongs to the ``i``-th row chunk and the ``j``-th column chunk; ``rows`` and ``cols`` are
    the slices the chunk covers. A NumPy-like ``x`` is cut into blocks of whole samples (:func:`block_size` of
    them), computed here one at a time.
    """
    if not is_dask(x):
        n = x.shape[0]
        every_gene = slice(0, x.shape[1])
        return [[func(as_numpy(x[sl]), sl, every_gene)] for sl in _slices(n, block_size(x.shape[1]))]
    import dask

    bounds = [np.cumsum((0, *c)) for c in x.chunks]
    rows = [slice(int(a), int(b)) for a, b in zip(bounds[0][:-1], bounds[0][1:], strict=True)]
    cols = [slice(int(a), int(b)) for a, b in zip(bounds[1][:-1], bounds[1][1:], strict=True)]
    blocks = x.to_delayed()
    call = dask.delayed(_call_chunk, pure=True)
    tasks = [[call(func, blocks[i, j], rows[i], cols[j]) for j in range(len(cols))] for i in range(len(rows))]
    return [list(row) for row in dask.compute(*tasks)]


def _call_chunk(func: Callable[[np.ndarray, slice, slice], T], block: Any, rows: slice, cols: slice) -> T:
    return func(as_numpy(block), rows, cols)


def sum_rows(grid: Sequence[Sequence[Any]], n: int, pick: Callable[[Any], np.ndarray] = lambda r: r) -> np.ndarray:
    """Add up per-sample vectors of a :func:`map_chunks` grid over the column chunks (``n`` samples)."""
    parts = [np.sum([pick(r) for r in row], axis=0) for row in grid]
    return concat(parts) if parts else np.zeros(n)


def sum_cols(grid: Sequence[Sequence[Any]], n: int, pick: Callable[[Any], np.ndarray] = lambda r: r) -> np.ndarray:
    """Add up per-gene vectors of a :func:`map_chunks` grid over the row chunks (``n`` genes)."""
    if not grid:
        return np.zeros(n)
    return concat([np.sum([pick(row[j]) for row in grid], axis=0) for j in range(len(grid[0]))])
