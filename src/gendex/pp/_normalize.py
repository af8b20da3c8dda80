"""Log transforms: limma's log-CPM and a log2 of (normalised) values."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .._validation import check_no_empty_samples, check_positive_obs, get_counts, get_matrix, to_dense


def log_cpm(
    adata: AnnData,
    *,
    layer: str | None = "counts",
    norm_factors_key: str | None = None,
    prior_count: float = 0.5,
    key_added: str = "log_cpm",
    copy: bool = False,
) -> AnnData | None:
    """limma/voom log-CPM: ``log2((count + 0.5) / (lib + 1) * 1e6)``.

    Parameters
    ----------
    adata
        Samples x genes AnnData with raw counts.
    layer
        Layer with the raw counts; None means ``X``.
    norm_factors_key
        Optional ``obs`` column of normalisation factors (e.g. TMM); the library size becomes
        ``total count * factor``.
    prior_count
        Count added to each value (limma uses 0.5).
    key_added
        Layer to write.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.layers[key_added]`` (float) and ``adata.uns[key_added]`` (parameters).

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=4, n_genes=50)
    >>> gdx.pp.log_cpm(adata)
    >>> adata.layers["log_cpm"].shape
    (4, 50)
    """
    if prior_count < 0:
        raise ValueError(f"`prior_count` must be >= 0, got {prior_count}")
    counts = get_counts(adata, layer).astype(np.float64)
    check_no_empty_samples(counts, adata.obs_names)
    lib = counts.sum(axis=1)
    if norm_factors_key is not None:
        lib = lib * check_positive_obs(adata, norm_factors_key)
    if copy:
        adata = adata.copy()
    adata.layers[key_added] = np.log2((counts + prior_count) / (lib[:, None] + 2 * prior_count) * 1e6)
    adata.uns[key_added] = {"prior_count": prior_count, "norm_factors_key": str(norm_factors_key)}
    return adata if copy else None


def log2_normalize(
    adata: AnnData,
    *,
    pseudocount: float = 1.0,
    layer: str | None = None,
    size_factor_key: str | None = None,
    key_added: str = "log2",
    copy: bool = False,
) -> AnnData | None:
    """``log2(x / s + pseudocount)`` into a layer; NaN stays NaN (for the classroom data with missing values).

    Parameters
    ----------
    adata
        Samples x genes AnnData with non-negative values.
    pseudocount
        Added before the log.
    layer
        Layer with the values; None means ``X``.
    size_factor_key
        Optional ``obs`` column of size factors ``s`` to divide by first (e.g. ``"size_factors"``).
    key_added
        Layer to write.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.layers[key_added]`` (float).

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_shift(seed=0)
    >>> gdx.pp.log2_normalize(adata)
    >>> adata.layers["log2"].shape
    (60, 100)
    """
    x = to_dense(get_matrix(adata, layer), dtype=np.float64)
    where = "`adata.X`" if layer is None else f"`adata.layers[{layer!r}]`"
    if np.isinf(x).any():
        raise ValueError(f"{where} contains infinite values")
    if (x[~np.isnan(x)] < 0).any():
        raise ValueError(f"{where} contains negative values; log2_normalize needs non-negative values")
    if pseudocount <= 0 and (x[~np.isnan(x)] == 0).any():
        raise ValueError(f"{where} contains zeros: they need a positive `pseudocount`")
    if pseudocount < 0:
        raise ValueError(f"`pseudocount` must be >= 0, got {pseudocount}")
    if size_factor_key is not None:
        x = x / check_positive_obs(adata, size_factor_key)[:, None]
    if copy:
        adata = adata.copy()
    adata.layers[key_added] = np.log2(x + pseudocount)
    adata.uns[key_added] = {"pseudocount": pseudocount, "size_factor_key": str(size_factor_key)}
    return adata if copy else None
