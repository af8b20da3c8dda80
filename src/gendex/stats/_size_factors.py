"""DESeq2 size factors (median of ratios) on a samples x genes count matrix."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .._lazy import block_size, is_dask, map_blocks
from ._threads import default_threads, parallel_for

#: entries per block of work
_BLOCK = 4_000_000


def size_factors_ratio(counts: NDArray, *, n_threads: int | None = None) -> NDArray[np.float64]:
    """DESeq2's median-of-ratios size factors (``estimateSizeFactors``, type ``"ratio"``).

    The geometric mean of each gene is taken over samples; genes with a zero in any sample are left out.
    The result is not renormalised, exactly as in R. The work is done in blocks of about 4 million entries
    (so memory stays bounded for large cohorts), in parallel threads for large matrices.

    Parameters
    ----------
    counts
        Samples x genes non-negative counts: a NumPy array, or a dask array, read in gene blocks (geometric
        means) and then sample blocks (medians) on the active dask scheduler, giving the same factors.
    n_threads
        Threads for the blocks (default: the CPUs available, at most 4, for at least 2 million counts).

    Returns
    -------
    One size factor per sample.
    """
    if is_dask(counts):
        return _ratio_lazy(counts)
    counts = np.asarray(counts)
    n, g = counts.shape
    threads = default_threads(counts.size) if n_threads is None else int(n_threads)
    usable = np.flatnonzero((counts > 0).all(axis=0))  # a zero anywhere makes the geometric mean zero
    if usable.size == 0:
        raise ValueError(
            "every gene has a zero count in at least one sample, so median-of-ratios size factors are undefined; "
            "use method='poscounts'"
        )
    log_geomeans = np.empty(usable.size)
    step = max(1, _BLOCK // n)

    def gene_block(start: int) -> None:
        cols = usable[start : start + step]
        log_geomeans[start : start + cols.size] = np.log(counts[:, cols].astype(np.float64)).mean(axis=0)

    parallel_for(gene_block, range(0, usable.size, step), threads)
    sf = np.empty(n)
    rows = max(1, _BLOCK // usable.size)

    def sample_block(start: int) -> None:
        block = np.log(counts[start : start + rows][:, usable].astype(np.float64))
        block -= log_geomeans
        sf[start : start + block.shape[0]] = np.exp(_row_medians(block))

    parallel_for(sample_block, range(0, n, rows), threads)
    return sf


def _gene_log_means(block: NDArray, where: slice) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The genes of a block with no zero count, and their mean log counts (computed as the in-memory path does)."""
    cols = np.flatnonzero((block > 0).all(axis=0))
    return cols + where.start, np.log(block[:, cols].astype(np.float64)).mean(axis=0)


def _ratio_lazy(counts) -> NDArray[np.float64]:
    """Median of ratios on a dask array: log geometric means in gene blocks, then medians in sample blocks."""
    n, g = counts.shape
    genes = map_blocks(_gene_log_means, counts, axis=1, size=block_size(n, n_arrays=3))
    usable = np.concatenate([u for u, _ in genes])
    if usable.size == 0:
        raise ValueError(
            "every gene has a zero count in at least one sample, so median-of-ratios size factors are undefined; "
            "use method='poscounts'"
        )
    log_geomeans = np.concatenate([m for _, m in genes])

    def sample_block(block: NDArray, where: slice) -> NDArray[np.float64]:
        logs = np.log(block[:, usable].astype(np.float64))
        logs -= log_geomeans
        return np.exp(_row_medians(logs))

    return np.concatenate(map_blocks(sample_block, counts, axis=0, size=block_size(g, n_arrays=3)))


def _row_medians(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """``np.median(a, axis=1)`` for finite values (partitioned in place, no NaN check)."""
    m = a.shape[1]
    k = m // 2
    if m % 2:
        a.partition(k, axis=1)
        return a[:, k].copy()
    a.partition([k - 1, k], axis=1)
    return (a[:, k - 1] + a[:, k]) / 2.0


def size_factors_poscounts(counts: NDArray) -> NDArray[np.float64]:
    """DESeq2's ``"poscounts"`` size factors: geometric means over positive counts, renormalised.

    Each gene's geometric mean is ``exp(sum(log(k[k > 0])) / n)``; each sample's factor is the median ratio
    over genes with a positive count in that sample; the factors are scaled to geometric mean 1.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.shape[0]
    pos = counts > 0
    log_counts = np.where(pos, np.log(np.where(pos, counts, 1.0)), 0.0)
    log_geomeans = log_counts.sum(axis=0) / n
    gene_ok = pos.any(axis=0)
    if not gene_ok.any():
        raise ValueError("all counts are zero: size factors are undefined")
    sf = np.empty(n)
    for i in range(n):
        keep = gene_ok & pos[i]
        if not keep.any():
            raise ValueError(f"sample {i} has no positive count: its size factor is undefined")
        sf[i] = np.exp(np.median(log_counts[i, keep] - log_geomeans[keep]))
    return sf / np.exp(np.mean(np.log(sf)))


def size_factors_lazy(counts, *, method: str = "ratio") -> NDArray[np.float64]:
    """DESeq2 size factors of checked dask counts (``"ratio"`` or ``"poscounts"``) in two blockwise passes.

    The genes' log geometric means come from blocks of whole genes, each sample's median ratio from blocks of
    whole samples (:func:`gendex._lazy.map_blocks`), each computed as the in-memory path does, so the factors
    are the same. The counts must have been checked (finite non-negative integers, no empty sample).
    """
    if method == "ratio":
        return _ratio_lazy(counts)
    n, g = counts.shape
    genes = map_blocks(_poscounts_gene_block, counts, axis=1, size=block_size(n, n_arrays=4))
    gene_ok = np.concatenate([ok for ok, _ in genes])
    if not gene_ok.any():
        raise ValueError("all counts are zero: size factors are undefined")
    log_geomeans = np.concatenate([m for _, m in genes])
    size = block_size(g, n_arrays=4)
    parts = map_blocks(lambda b, sl: _poscounts_sample_block(b, sl, gene_ok, log_geomeans), counts, axis=0, size=size)
    sf = np.concatenate(parts)
    return sf / np.exp(np.mean(np.log(sf)))


def _poscounts_gene_block(block: NDArray, where: slice) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Which genes of a block have a positive count, and their log geometric means over positive counts."""
    pos = block > 0
    log_counts = np.where(pos, np.log(np.where(pos, block, 1).astype(np.float64)), 0.0)
    return np.asarray(pos.any(axis=0)), log_counts.sum(axis=0) / block.shape[0]


def _poscounts_sample_block(block: NDArray, sl: slice, gene_ok: NDArray, log_geomeans: NDArray):
    sf = np.empty(block.shape[0])
    for i, row in enumerate(block):
        keep = gene_ok & (row > 0)
        if not keep.any():
            raise ValueError(f"sample {sl.start + i} has no positive count: its size factor is undefined")
        sf[i] = np.exp(np.median(np.log(row[keep].astype(np.float64)) - log_geomeans[keep]))
    return sf
