"""Log transforms: limma's log-CPM and a log2 of (normalised) values."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .._lazy import is_dask, map_chunks
from .._validation import (
    check_backed_writes,
    check_no_empty_samples,
    check_positive_obs,
    get_counts,
    get_matrix,
    scan_counts,
    to_dense,
)


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

    Dask counts are checked and summed in one blockwise pass; the layer is then a lazy dask array with the
    counts' chunks (written chunk by chunk by ``write_zarr``, computed when read).

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
    check_backed_writes(adata, copy=copy)
    if is_dask(get_matrix(adata, layer, lazy=True)):
        scan = scan_counts(adata, layer)
        counts, lib = scan.x.astype(np.float64), scan.lib_size.astype(np.float64)
    else:
        counts = get_counts(adata, layer, lazy=True).astype(np.float64)
        check_no_empty_samples(counts, adata.obs_names)
        lib = counts.sum(axis=1)
    if norm_factors_key is not None:
        lib = lib * check_positive_obs(adata, norm_factors_key)
    values = np.log2((counts + prior_count) / (lib[:, None] + 2 * prior_count) * 1e6)  # lazy for dask counts
    if copy:
        adata = adata.copy()
    adata.layers[key_added] = values
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

    Dask values are checked in one blockwise pass and the layer is a lazy dask array.

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
    check_backed_writes(adata, copy=copy)
    x = get_matrix(adata, layer, lazy=True)
    where = "`adata.X`" if layer is None else f"`adata.layers[{layer!r}]`"
    if is_dask(x):
        x = x.astype(np.float64)
        flags = np.asarray(
            np.array(map_chunks(lambda b, r, c: _value_flags(b), x), dtype=bool).reshape(-1, 3).any(axis=0)
        )
    else:
        x = to_dense(x, dtype=np.float64)
        flags = np.asarray(_value_flags(x), dtype=bool)
    if flags[0]:
        raise ValueError(f"{where} contains infinite values")
    if flags[1]:
        raise ValueError(f"{where} contains negative values; log2_normalize needs non-negative values")
    if pseudocount <= 0 and flags[2]:
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


def _value_flags(x: np.ndarray) -> np.ndarray:
    """Whether ``x`` holds infinities, negative values, zeros (NaN ignored)."""
    seen = x[~np.isnan(x)]
    return np.array([np.isinf(seen).any(), (seen < 0).any(), (seen == 0).any()])
