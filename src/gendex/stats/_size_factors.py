"""DESeq2 size factors (median of ratios) on a samples x genes count matrix."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def size_factors_ratio(counts: NDArray) -> NDArray[np.float64]:
    """DESeq2's median-of-ratios size factors (``estimateSizeFactors``, type ``"ratio"``).

    The geometric mean of each gene is taken over samples; genes with a zero in any sample are left out.
    The result is not renormalised, exactly as in R.

    Parameters
    ----------
    counts
        Samples x genes non-negative counts.

    Returns
    -------
    One size factor per sample.
    """
    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_counts = np.log(counts)
    log_geomeans = log_counts.mean(axis=0)
    usable = np.isfinite(log_geomeans)
    if not usable.any():
        raise ValueError(
            "every gene has a zero count in at least one sample, so median-of-ratios size factors are undefined; "
            "use method='poscounts'"
        )
    return np.exp(np.median(log_counts[:, usable] - log_geomeans[usable], axis=1))


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
