"""Per-gene two-sample t-test (Welch or Student) on an AnnData, NaN-aware."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._contrast import resolve_comparison
from .._utils import store_de_results
from .._validation import check_groups, check_not_backed, check_unique_names, get_matrix, to_dense
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
    check_not_backed(adata)
    check_unique_names(adata)
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"`key_added` must be a non-empty string, got {key_added!r}")
    comparison = resolve_comparison(contrast, groupby=groupby, group1=group1, group2=group2)
    assert comparison is not None  # required=True raises instead of returning None
    groupby, group1, group2 = comparison
    labels = check_groups(adata, groupby, [group1, group2], min_size=2)
    raw = get_matrix(adata, layer)
    where = "`adata.X`" if layer is None else f"`adata.layers[{layer!r}]`"
    dtype = getattr(raw, "dtype", None)
    if dtype is None or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(f"{where}: expected a numeric matrix, got dtype {dtype}")
    x = to_dense(raw, dtype=np.float64)
    if np.isinf(x).any():
        raise ValueError(f"{where} contains infinite values")
    finite = x[np.isfinite(x)]
    if finite.size and (finite >= 0).all() and (finite == np.round(finite)).all() and finite.max() > 100:
        warnings.warn(
            f"{where} looks like raw counts; the t-test compares means on the given scale, so log-transform "
            "first (e.g. gdx.pp.log2_normalize) to get a log2 fold change",
            UserWarning,
            stacklevel=2,
        )
    in1 = (labels == group1).to_numpy()
    in2 = (labels == group2).to_numpy()
    res = ttest_ind(x[in1], x[in2], equal_var=equal_var)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        base_mean = np.nanmean(x[in1 | in2], axis=0)
    results = pd.DataFrame(
        {
            "baseMean": base_mean,
            "log2FoldChange": res.mean1 - res.mean2,
            "lfcSE": res.se,
            "stat": res.statistic,
            "pvalue": res.pvalue,
            "padj": bh_adjust(res.pvalue),
            "mean1": res.mean1,
            "mean2": res.mean2,
            "n1": res.n1,
            "n2": res.n2,
            "df": res.df,
        },
        index=adata.var_names,
    )
    n_untested = int(np.isnan(res.pvalue).sum())
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
