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
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

#: default memory for one block's working set (all arrays a kernel makes from it), in bytes
BLOCK_BYTES = int(os.environ.get("GENDEX_BLOCK_BYTES", 256 * 2**20))


def is_dask(x: Any) -> bool:
    """Whether ``x`` is a dask array (checked without importing dask)."""
    return type(x).__module__.split(".")[0] == "dask" and hasattr(x, "dask") and hasattr(x, "chunks")


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
        return [func(np.asarray(x[:, sl] if axis == 1 else x[sl]), sl) for sl in where]
    import dask

    chunks = {axis: tuple(sl.stop - sl.start for sl in where), 1 - axis: -1}
    blocks = x.rechunk(chunks).to_delayed().ravel()
    call = dask.delayed(_call, pure=True)
    tasks = [call(func, block, sl) for block, sl in zip(blocks, where, strict=True)]
    return list(dask.compute(*tasks))


def _call(func: Callable[[np.ndarray, slice], T], block: Any, sl: slice) -> T:
    return func(np.asarray(block), sl)


def concat(parts: Sequence[np.ndarray], axis: int = 0) -> np.ndarray:
    """Join per-block results (an empty list gives an empty float array)."""
    return np.concatenate(list(parts), axis=axis) if len(parts) else np.empty(0)
