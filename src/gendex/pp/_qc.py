"""``pp.qc_metrics``: library sizes and detected genes."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .._lazy import is_dask, sum_cols, sum_rows
from .._validation import check_backed_writes, get_counts, get_matrix, scan_counts


def qc_metrics(
    adata: AnnData, *, layer: str | None = "counts", key_added: str = "qc_metrics", copy: bool = False
) -> AnnData | None:
    """Per-sample and per-gene count summaries.

    Dask counts (out of core) are summed chunk by chunk in one pass, checks included.

    Parameters
    ----------
    adata
        Samples x genes AnnData with raw counts.
    layer
        Layer with the raw counts; None means ``X``.
    key_added
        Name of the record ``uns[key_added]`` (the layer read and the columns written); the columns keep their
        documented names (``pl.library_sizes`` reads ``obs["library_size"]``).
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.obs["library_size"]`` (total counts) and ``adata.obs["n_genes_detected"]`` (genes with a
    count > 0), and ``adata.var["total_counts"]`` and ``adata.var["n_samples_detected"]``, and records the
    layer and these column names in ``adata.uns[key_added]``. Returns None, or the modified copy when
    ``copy=True``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=4, n_genes=50)
    >>> gdx.pp.qc_metrics(adata)
    >>> "library_size" in adata.obs
    True
    """
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"`key_added` must be a non-empty string, got {key_added!r}")
    check_backed_writes(adata, copy=copy)
    if is_dask(get_matrix(adata, layer, lazy=True)):
        columns = _lazy_metrics(adata, layer)
    else:
        counts = get_counts(adata, layer, lazy=True)
        columns = {
            "library_size": counts.sum(axis=1),
            "n_genes_detected": (counts > 0).sum(axis=1),
            "total_counts": counts.sum(axis=0),
            "n_samples_detected": (counts > 0).sum(axis=0),
        }
    if copy:
        adata = adata.copy()
    for name in ("library_size", "n_genes_detected"):
        adata.obs[name] = columns[name].astype(np.int64)
    for name in ("total_counts", "n_samples_detected"):
        adata.var[name] = columns[name].astype(np.int64)
    adata.uns[key_added] = {
        "layer": "X" if layer is None else layer,
        "obs_columns": ["library_size", "n_genes_detected"],
        "var_columns": ["total_counts", "n_samples_detected"],
    }
    return adata if copy else None


def _chunk_metrics(block: np.ndarray, rows: slice, cols: slice):
    detected = block > 0
    return detected.sum(axis=1), block.sum(axis=0), detected.sum(axis=0)


def _lazy_metrics(adata: AnnData, layer: str | None) -> dict[str, np.ndarray]:
    """The four summaries of dask counts, from one blockwise pass."""
    scan = scan_counts(adata, layer, _chunk_metrics, check_empty=False)
    grid = scan.results
    return {
        "library_size": scan.lib_size,
        "n_genes_detected": sum_rows(grid, adata.n_obs, lambda r: r[0]),
        "total_counts": sum_cols(grid, adata.n_vars, lambda r: r[1]),
        "n_samples_detected": sum_cols(grid, adata.n_vars, lambda r: r[2]),
    }
