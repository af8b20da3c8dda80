"""``pp.size_factors``: DESeq2 size factors into ``obs``."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._lazy import is_dask
from .._validation import (
    check_backed_writes,
    check_copy_inplace,
    check_no_empty_samples,
    get_counts,
    get_matrix,
    scan_counts,
)
from ..stats import size_factors_poscounts, size_factors_ratio
from ..stats._size_factors import size_factors_lazy


def size_factors(
    adata: AnnData,
    *,
    method: Literal["ratio", "poscounts"] = "ratio",
    layer: str | None = "counts",
    key_added: str = "size_factors",
    inplace: bool = True,
    copy: bool = False,
) -> AnnData | pd.Series | None:
    """Compute DESeq2 size factors (median of ratios) from raw counts.

    Dask counts (out of core) take three blockwise passes: the checks (chunk by chunk), the genes' log
    geometric means (blocks of whole genes), the samples' median ratios (blocks of whole samples); the factors
    are those of the in-memory path.

    Parameters
    ----------
    adata
        Samples x genes AnnData with raw counts.
    method
        ``"ratio"``: DESeq2's default median of ratios over genes with no zero (equal to R's
        ``estimateSizeFactors``); ``"poscounts"``: geometric means over positive counts, for data where every
        gene has a zero somewhere.
    layer
        Layer with the raw counts; None means ``X``.
    key_added
        Column of ``obs`` to write.
    inplace
        Write into ``adata``; when False, return the size factors instead.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.obs[key_added]`` (float) and ``adata.uns[key_added]`` (``{"method", "layer"}``); returns
    None, or the modified copy when ``copy=True``, or a :class:`~pandas.Series` when ``inplace=False``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300)
    >>> gdx.pp.size_factors(adata)
    >>> adata.obs["size_factors"].shape
    (6,)
    """
    check_copy_inplace(copy=copy, inplace=inplace)
    check_backed_writes(adata, copy=copy)
    if method not in ("ratio", "poscounts"):
        raise ValueError(f"`method` must be 'ratio' or 'poscounts', got {method!r}")
    if is_dask(get_matrix(adata, layer, lazy=True)):
        sf = size_factors_lazy(scan_counts(adata, layer).x, method=method)
    else:
        counts = get_counts(adata, layer, lazy=True)
        check_no_empty_samples(counts, adata.obs_names)
        sf = size_factors_ratio(counts) if method == "ratio" else size_factors_poscounts(counts)
    result = pd.Series(sf, index=adata.obs_names.copy(), name=key_added)
    if not inplace:
        return result
    if copy:
        adata = adata.copy()
    adata.obs[key_added] = result.to_numpy(dtype=np.float64)
    adata.uns[key_added] = {"method": method, "layer": "X" if layer is None else layer}
    return adata if copy else None
