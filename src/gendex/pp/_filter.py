"""Gene filters: total count, edgeR's ``filterByExpr`` rule, and missingness for the classroom data."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from numpy.typing import NDArray

from .._lazy import is_dask, map_chunks, sum_cols
from .._validation import (
    check_backed_writes,
    check_no_empty_samples,
    check_obs_key,
    get_counts,
    get_matrix,
    scan_counts,
    to_dense,
)


def _apply(
    adata: AnnData,
    keep: NDArray[np.bool_],
    *,
    key: str,
    record: dict,
    subset: bool,
    copy: bool,
    columns: dict[str, NDArray] | None = None,
):
    """Flag genes in ``var[f"pass_{key}"]`` (plus ``columns``), subset in place when asked, record in ``uns``."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"`key_added` must be a non-empty string, got {key!r}")
    if not keep.any():
        raise ValueError(f"{key}: no gene passes the filter ({record}); loosen the thresholds")
    if copy:
        adata = adata.copy()
    record = {**record, "n_genes_before": int(keep.size), "n_genes_kept": int(keep.sum()), "subset": subset}
    for name, values in (columns or {}).items():
        adata.var[name] = values
    adata.var[f"pass_{key}"] = keep
    if subset:
        adata._inplace_subset_var(keep)
    adata.uns[key] = record
    return adata if copy else None


def filter_genes(
    adata: AnnData,
    *,
    min_total_count: int = 10,
    min_samples: int = 0,
    min_count: int = 1,
    layer: str | None = "counts",
    subset: bool = True,
    key_added: str = "filter_genes",
    copy: bool = False,
) -> AnnData | None:
    """Keep genes with enough counts (DESeq2's ``rowSums(counts) >= 10`` prefilter by default).

    Dask counts are summed chunk by chunk in one pass (checks included); the subset stays lazy.

    Parameters
    ----------
    adata
        Samples x genes AnnData with raw counts.
    min_total_count
        Smallest total count over all samples.
    min_samples
        Smallest number of samples with a count of at least ``min_count``.
    min_count
        Count threshold used by ``min_samples``.
    layer
        Layer with the raw counts; None means ``X``.
    subset
        Subset ``adata`` in place; when False only flag genes (``var["pass_filter_genes"]`` is always set).
    key_added
        Name of the filter: the flag is ``var[f"pass_{key_added}"]`` and the record ``uns[key_added]``.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Subsets the genes of ``adata`` (or sets ``var["pass_filter_genes"]``) and records the parameters and
    numbers in ``adata.uns["filter_genes"]``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=500)
    >>> gdx.pp.filter_genes(adata, min_total_count=10)
    >>> adata.uns["filter_genes"]["n_genes_kept"] <= 500
    True
    """
    check_backed_writes(adata, copy=copy, subset=subset)
    if is_dask(get_matrix(adata, layer, lazy=True)):
        grid = scan_counts(adata, layer, lambda b, r, c: (b.sum(axis=0), (b >= min_count).sum(axis=0))).results
        total = sum_cols(grid, adata.n_vars, lambda r: r[0])
        n_reaching = sum_cols(grid, adata.n_vars, lambda r: r[1])
    else:
        counts = get_counts(adata, layer, lazy=True)
        total, n_reaching = counts.sum(axis=0), (counts >= min_count).sum(axis=0)
    keep = (total >= min_total_count) & (n_reaching >= min_samples)
    record = {"min_total_count": min_total_count, "min_samples": min_samples, "min_count": min_count}
    return _apply(adata, keep, key=key_added, record=record, subset=subset, copy=copy)


def filter_by_expr(
    adata: AnnData,
    *,
    group: str | None = None,
    min_count: float = 10,
    min_total_count: float = 15,
    large_n: int = 10,
    min_prop: float = 0.7,
    layer: str | None = "counts",
    subset: bool = True,
    key_added: str = "filter_by_expr",
    copy: bool = False,
) -> AnnData | None:
    """EdgeR's ``filterByExpr`` rule: keep genes expressed above a CPM cutoff in enough samples.

    The CPM cutoff is ``min_count / median library size * 1e6``; a gene must reach it in at least as many
    samples as the smallest group (above ``large_n`` the size is shrunk by ``min_prop``) and have a total
    count of at least ``min_total_count``.

    Dask counts take two blockwise passes (library sizes with the checks, then the CPM counts); the subset stays
    lazy.

    Parameters
    ----------
    adata
        Samples x genes AnnData with raw counts.
    group
        ``obs`` column of the experimental groups; None treats all samples as one group.
    min_count, min_total_count, large_n, min_prop
        edgeR's parameters, with its defaults.
    layer
        Layer with the raw counts; None means ``X``.
    subset
        Subset ``adata`` in place; when False only flag genes (``var["pass_filter_by_expr"]`` is always set).
    key_added
        Name of the filter: the flag is ``var[f"pass_{key_added}"]`` and the record ``uns[key_added]``.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Subsets the genes of ``adata`` (or sets ``var["pass_filter_by_expr"]``) and records the parameters, the
    CPM cutoff and the numbers in ``adata.uns["filter_by_expr"]``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=500)
    >>> gdx.pp.filter_by_expr(adata, group="condition")
    """
    check_backed_writes(adata, copy=copy, subset=subset)
    lazy = is_dask(get_matrix(adata, layer, lazy=True))
    if lazy:
        scan = scan_counts(adata, layer, lambda b, r, c: b.sum(axis=0))
        lib = scan.lib_size.astype(np.float64)
        totals = sum_cols(scan.results, adata.n_vars).astype(np.float64)
    else:
        counts = get_counts(adata, layer, lazy=True).astype(np.float64)
        check_no_empty_samples(counts, adata.obs_names)
        lib, totals = counts.sum(axis=1), counts.sum(axis=0)
    if group is None:
        min_sample_size = float(adata.n_obs)
    else:
        labels = check_obs_key(adata, group)
        if labels.isna().any():
            raise ValueError(
                f"`adata.obs[{group!r}]` has missing values for samples {adata.obs_names[labels.isna()].tolist()}"
            )
        sizes = labels.astype(str).value_counts()
        min_sample_size = float(sizes[sizes > 0].min())
    if min_sample_size > large_n:
        min_sample_size = large_n + (min_sample_size - large_n) * min_prop
    median_lib = float(np.median(lib))
    cutoff = min_count / median_lib * 1e6
    if lazy:
        n_above = sum_cols(
            map_chunks(lambda b, r, c: (b.astype(np.float64) / lib[r, None] * 1e6 >= cutoff).sum(axis=0), scan.x),
            adata.n_vars,
        )
    else:
        n_above = (counts / lib[:, None] * 1e6 >= cutoff).sum(axis=0)
    tol = 1e-14
    keep = (n_above >= min_sample_size - tol) & (totals >= min_total_count - tol)
    record = {
        "group": str(group),
        "min_count": min_count,
        "min_total_count": min_total_count,
        "large_n": large_n,
        "min_prop": min_prop,
        "cpm_cutoff": cutoff,
        "median_library_size": median_lib,
        "min_sample_size": min_sample_size,
    }
    return _apply(adata, keep, key=key_added, record=record, subset=subset, copy=copy)


def filter_missing(
    adata: AnnData,
    *,
    max_missing: float = 0.8,
    layer: str | None = None,
    subset: bool = True,
    key_added: str = "filter_missing",
    copy: bool = False,
) -> AnnData | None:
    """Flag, and by default drop, genes with too many missing (NaN) values.

    Parameters
    ----------
    adata
        Samples x genes AnnData, possibly with NaN.
    max_missing
        Largest fraction of missing values a gene may have to pass.
    layer
        Layer with the values; None means ``X``.
    subset
        Subset ``adata`` in place to the passing genes; when False only flag them.
    key_added
        Name of the filter: the flag is ``var[f"pass_{key_added}"]`` and the record ``uns[key_added]``.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.var["n_missing"]``, ``adata.var["frac_missing"]`` and ``adata.var["pass_filter_missing"]``,
    records the parameters in ``adata.uns["filter_missing"]`` and subsets genes when ``subset``. The per-gene
    summary of every gene, the dropped ones included (columns ``n_missing``, ``frac_missing``,
    ``pass_filter_missing``, indexed by the original ``var_names``), is kept in
    ``adata.uns["filter_missing"]["summary"]``. Returns None, or the modified copy when ``copy=True``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_shift(missing_p=0.1, seed=0)
    >>> gdx.pp.filter_missing(adata, max_missing=0.5)
    >>> bool(adata.var["pass_filter_missing"].all())
    True
    >>> adata.uns["filter_missing"]["summary"].shape
    (100, 3)
    """
    if not 0.0 <= max_missing <= 1.0:
        raise ValueError(f"`max_missing` must lie in [0, 1], got {max_missing}")
    check_backed_writes(adata, copy=copy, subset=subset)
    x = get_matrix(adata, layer, lazy=True)
    if is_dask(x):
        n_missing = sum_cols(map_chunks(lambda b, r, c: np.isnan(b.astype(np.float64)).sum(axis=0), x), adata.n_vars)
    else:
        n_missing = np.isnan(to_dense(x, dtype=np.float64)).sum(axis=0)
    frac = n_missing / adata.n_obs
    keep = frac <= max_missing
    columns = {"n_missing": n_missing.astype(np.int64), "frac_missing": frac}
    summary = pd.DataFrame({**columns, f"pass_{key_added}": keep}, index=adata.var_names.astype(str))
    record = {"max_missing": max_missing}
    out = _apply(adata, keep, key=key_added, record=record, subset=subset, copy=copy, columns=columns)
    (out if copy else adata).uns[key_added]["summary"] = summary  # every gene, the dropped ones too
    return out
