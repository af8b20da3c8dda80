"""Per-gene two-sample t-test (Welch or Student) on an AnnData, NaN-aware."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._contrast import resolve_comparison
from .._lazy import is_dask, map_blocks
from .._utils import store_de_results
from .._validation import check_backed_writes, check_groups, check_unique_names, get_matrix, to_dense
from ..stats._multitest import bh_adjust
from ..stats._ttest import ttest_ind

logger = logging.getLogger(__name__)


def ttest(
    adata: AnnData,
    *,
    contrast: Sequence[str] | None = None,
    groupby: str | None = None,
    group1: str | None = None,
    group2: str | None = None,
    layer: str | None = None,
    equal_var: bool = True,
    key_added: str = "ttest",
    copy: bool = False,
) -> AnnData | None:
    """Two-sample t-test of the test group against the reference group for every gene, ignoring missing values.

    Meant for log-scale data (e.g. the ``"log2"`` layer of :func:`gendex.pp.log2_normalize`): the fold
    change is the difference of the group means on the given scale.

    Dask values (out of core) are tested in blocks of whole genes, one dask task each, reading only the two
    groups' samples.

    Parameters
    ----------
    adata
        Samples x genes AnnData; NaN marks a missing value.
    contrast
        ``[factor, test, reference]``: the ``obs`` column with the groups, the test group (numerator of the fold
        change) and the reference group, as in :func:`gendex.tl.deseq2`.
    groupby, group1, group2
        The same comparison in scanpy/scvi-tools' words (``group1`` = test, ``group2`` = reference): an alias of
        ``contrast``; give one form or the other.
    layer
        Layer with the (log-scale) values; None means ``X``.
    equal_var
        Student's pooled-variance t-test (default, as R's teaching ``t.test(var.equal = TRUE)``); False runs
        Welch's unequal-variance test, safer when the groups' variances or sizes differ.
    key_added
        Key of the results in ``varm`` and ``uns``.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.varm[key_added]`` (:class:`~pandas.DataFrame` indexed by ``var_names``) with ``baseMean``
    (mean over the samples of both groups), ``log2FoldChange`` (``mean1 - mean2``), ``lfcSE`` (its standard
    error), ``stat`` (t), ``pvalue``, ``padj`` (Benjamini-Hochberg), ``mean1``, ``mean2``, ``n1``, ``n2``
    (non-missing values per group) and ``df``; genes with fewer than two values in a group get NaN. Sets
    ``adata.uns[key_added]`` with ``method``, ``params``, ``versions``, ``design`` and
    ``contrast = [factor, test, reference]``. Returns the modified copy when ``copy=True``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_shift(n_samples=20, n_genes=50, seed=0)
    >>> gdx.pp.log2_normalize(adata)
    >>> gdx.tl.ttest(adata, contrast=["condition", "Treatment", "Control"], layer="log2")
    >>> top10 = adata.varm["ttest"]["pvalue"].nsmallest(10).index
    >>> bool(adata.var.loc[top10, "is_shifted"].all())
    True
    """
    check_backed_writes(adata, copy=copy)
    check_unique_names(adata)
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"`key_added` must be a non-empty string, got {key_added!r}")
    comparison = resolve_comparison(contrast, groupby=groupby, group1=group1, group2=group2)
    assert comparison is not None  # required=True raises instead of returning None
    groupby, group1, group2 = comparison
    labels = check_groups(adata, groupby, [group1, group2], min_size=2)
    raw = get_matrix(adata, layer, lazy=True)
    where = "`adata.X`" if layer is None else f"`adata.layers[{layer!r}]`"
    dtype = getattr(raw, "dtype", None)
    if dtype is None or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(f"{where}: expected a numeric matrix, got dtype {dtype}")
    in1 = (labels == group1).to_numpy()
    in2 = (labels == group2).to_numpy()
    if is_dask(raw):  # per gene: blocks of whole genes, the two groups' samples only
        used = in1 | in2
        parts = map_blocks(lambda b, sl: _gene_block(b, in1[used], in2[used], equal_var=equal_var), raw[used], axis=1)
    else:
        parts = [_gene_block(to_dense(raw, dtype=np.float64), in1, in2, equal_var=equal_var)]
    flags = np.array([p.pop("flags") for p in parts])
    if flags[:, 0].any():
        raise ValueError(f"{where} contains infinite values")
    counts_like = bool(flags[:, 1].all() and flags[:, 2].max() > 100)
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if counts_like:
        warnings.warn(
            f"{where} looks like raw counts; the t-test compares means on the given scale, so log-transform "
            "first (e.g. gdx.pp.log2_normalize) to get a log2 fold change",
            UserWarning,
            stacklevel=2,
        )
    columns["padj"] = bh_adjust(columns["pvalue"])
    order = ("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj", "mean1", "mean2", "n1", "n2", "df")
    results = pd.DataFrame({k: columns[k] for k in order}, index=adata.var_names)
    n_untested = int(np.isnan(results["pvalue"]).sum())
    if n_untested:
        logger.info("ttest: %d genes have fewer than two values in a group and were not tested", n_untested)
    if copy:
        adata = adata.copy()
    store_de_results(
        adata,
        key_added,
        results,
        method="ttest_welch" if not equal_var else "ttest_student",
        params={
            "groupby": groupby,
            "group1": group1,
            "group2": group2,
            "layer": str(layer),
            "equal_var": bool(equal_var),
        },
        packages=("numpy", "scipy"),
        design=f"~{groupby}",
        contrast=[groupby, group1, group2],
    )
    return adata if copy else None


def _gene_block(x: np.ndarray, in1: np.ndarray, in2: np.ndarray, *, equal_var: bool) -> dict:
    """The t-test columns of a block of whole genes, and flags: infinities, raw-count look, largest value."""
    x = np.asarray(x, dtype=np.float64)
    finite = x[np.isfinite(x)]
    looks_like_counts = bool(finite.size) and bool((finite >= 0).all() and (finite == np.round(finite)).all())
    flags = (bool(np.isinf(x).any()), looks_like_counts or not finite.size, float(finite.max(initial=-np.inf)))
    if flags[0]:
        return {"flags": flags}
    res = ttest_ind(x[in1], x[in2], equal_var=equal_var)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        base_mean = np.nanmean(x[in1 | in2], axis=0)
    return {
        "baseMean": base_mean,
        "log2FoldChange": res.mean1 - res.mean2,
        "lfcSE": res.se,
        "stat": res.statistic,
        "pvalue": res.pvalue,
        "mean1": res.mean1,
        "mean2": res.mean2,
        "n1": res.n1,
        "n2": res.n2,
        "df": res.df,
        "flags": flags,
    }
