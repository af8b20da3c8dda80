"""limma-voom differential expression on an AnnData (our own BSD implementation of TMM/voom/lmFit/eBayes)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._design import contrast_vector, design_matrix
from .._lazy import is_dask, sum_cols
from .._utils import store_de_results
from .._validation import (
    check_backed_writes,
    check_no_empty_samples,
    check_unique_names,
    get_counts,
    get_matrix,
    obs_table,
    scan_counts,
)
from ..stats._limma import contrasts_fit, ebayes, lm_fit, top_table, voom
from ..stats._limma._voom import voom_fit_lazy
from ..stats._norm_factors import calc_norm_factors_tmm, calc_norm_factors_tmm_lazy

logger = logging.getLogger(__name__)

_TERM = re.compile(r"^(?P<factor>.+)\[T\.(?P<level>.+)\]$")


def _resolve_contrast(
    x: pd.DataFrame, obs: pd.DataFrame, contrast: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """Contrast vector and its ``[factor, test, ref]`` label (``None``: the last design coefficient)."""
    if contrast is not None:
        return contrast_vector(x, obs, contrast), [str(c) for c in contrast]
    last = str(x.columns[-1])
    vec = np.zeros(x.shape[1])
    vec[-1] = 1.0
    match = _TERM.match(last)
    if match and match["factor"] in obs.columns:
        factor = match["factor"]
        values = obs[factor]
        levels = (
            list(values.cat.categories)
            if isinstance(values.dtype, pd.CategoricalDtype)
            else sorted(values.astype(str).unique())
        )
        return vec, [factor, match["level"], str(levels[0])]
    if last == "Intercept":
        raise ValueError("the design has only an intercept; give a design with a factor and a `contrast`")
    return vec, [last]


def limma_voom(
    adata: AnnData,
    *,
    design: str = "~condition",
    contrast: Sequence[str] | None = None,
    normalization: Literal["TMM", "none"] = "TMM",
    layer: str | None = "counts",
    span: float = 0.5,
    proportion: float = 0.01,
    key_added: str = "limma_voom",
    copy: bool = False,
) -> AnnData | None:
    """Differential expression with limma-voom: TMM, voom weights, weighted linear model, empirical Bayes.

    Runs edgeR's TMM normalisation (``calcNormFactors``), ``voom`` (log-CPM with precision weights from the
    lowess mean-variance trend), a weighted ``lmFit``, ``contrasts.fit``, ``eBayes`` and ``topTable`` with
    Benjamini-Hochberg adjustment: an independent vectorised implementation that reproduces R's limma.

    Dask counts (out of core) run in blocks as dask tasks: the checks with the library sizes, TMM over blocks of
    whole samples (two passes and the reference sample's row), then voom's trend from every gene's mean and sd and
    the weighted fits over blocks of whole genes (two passes); only per-gene results are held in memory.

    Parameters
    ----------
    adata
        Samples x genes AnnData with raw counts (filter lowly expressed genes first, e.g. with
        :func:`gendex.pp.filter_by_expr`).
    design
        Formula over ``obs`` columns, e.g. ``"~celltype + status"`` (treatment coding, first category as
        reference).
    contrast
        ``[factor, test_level, reference_level]``; the log fold change is ``test - reference``. None tests the
        last coefficient of the design.
    normalization
        ``"TMM"`` for TMM normalisation factors, ``"none"`` for raw library sizes.
    layer
        Layer with the raw counts; None means ``X``.
    span
        Span of voom's lowess trend.
    proportion
        Assumed proportion of DE genes for the B statistic.
    key_added
        Key of the results in ``varm`` and ``uns``.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.varm[key_added]`` (:class:`~pandas.DataFrame` indexed by ``var_names``) with ``baseMean``
    (= ``AveExpr``, mean log2-CPM), ``log2FoldChange`` (= ``logFC``), ``lfcSE`` (posterior standard error,
    ``logFC / t``), ``stat`` (= ``t``, moderated), ``pvalue``, ``padj`` (BH), ``AveExpr``, ``t`` and ``B``
    (log-odds of DE); ``adata.uns[key_added]`` with ``method``, ``params``, ``versions``, ``design``,
    ``contrast``, ``coefficients`` (design column names), ``s2_prior``, ``df_prior``, ``var_prior``,
    ``norm_factors``, ``lib_size`` and ``voom`` (``sx``, ``sy``: mean log2 count and sqrt residual sd of the
    genes in the trend; ``trend_x``, ``trend_y``: the lowess line) for :func:`gendex.pl.voom`. Nothing is
    written outside the key (the TMM factors are ``uns[key_added]["norm_factors"]``, in ``obs_names`` order).
    Returns the modified copy when ``copy=True``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=500, random_state=0)
    >>> gdx.pp.filter_by_expr(adata, group="condition")
    >>> gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    >>> adata.varm["limma_voom"][["log2FoldChange", "stat", "padj"]].shape[1]
    3
    """
    check_backed_writes(adata, copy=copy)
    check_unique_names(adata)
    if normalization not in ("TMM", "none"):
        raise ValueError(f"`normalization` must be 'TMM' or 'none', got {normalization!r}")
    if not 0 < span <= 1:
        raise ValueError(f"`span` must lie in (0, 1], got {span}")
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"`key_added` must be a non-empty string, got {key_added!r}")
    if is_dask(get_matrix(adata, layer, lazy=True)):
        obs = obs_table(adata)  # a lazy obs (read_lazy) is read once
        x = design_matrix(obs, design)  # before the passes over the counts: a bad design fails at once
        vec, contrast_label = _resolve_contrast(x, obs, contrast)
        if adata.n_vars < 2:
            raise ValueError("limma_voom needs at least two genes to fit the mean-variance trend")
        scan = scan_counts(adata, layer, lambda b, r, c: (b > 0).sum(axis=0))
        totals = scan.lib_size.astype(np.float64)
        expressed = sum_cols(scan.results, adata.n_vars) > 0
        norm_factors = (
            calc_norm_factors_tmm_lazy(scan.x, totals, expressed) if normalization == "TMM" else np.ones(adata.n_obs)
        )
        lib_size = totals * norm_factors
        fit, v = voom_fit_lazy(scan.x, x.to_numpy(), lib_size=lib_size, span=span, coef_names=list(x.columns))
    else:
        counts = get_counts(adata, layer, lazy=True)
        check_no_empty_samples(counts, adata.obs_names)
        if adata.n_vars < 2:
            raise ValueError("limma_voom needs at least two genes to fit the mean-variance trend")
        x = design_matrix(adata.obs, design)
        vec, contrast_label = _resolve_contrast(x, adata.obs, contrast)
        counts = counts.astype(np.float64)
        totals = counts.sum(axis=1)
        norm_factors = calc_norm_factors_tmm(counts) if normalization == "TMM" else np.ones(adata.n_obs)
        lib_size = totals * norm_factors
        v = voom(counts, x.to_numpy(), lib_size=lib_size, span=span)
        fit = lm_fit(v.log_cpm, x.to_numpy(), weights=v.weights, coef_names=list(x.columns))
    cfit = contrasts_fit(fit, vec, names=["contrast"])
    eb = ebayes(cfit, proportion=proportion)
    tt = top_table(cfit, eb, genes=adata.var_names)
    logger.info(
        "limma_voom: %d genes, s2_prior %.4g, df_prior %.4g, %d genes with adj.P < 0.05",
        adata.n_vars,
        eb.s2_prior,
        eb.df_prior,
        int((tt["adj.P.Val"] < 0.05).sum()),
    )

    results = pd.DataFrame(
        {
            "baseMean": tt["AveExpr"],
            "log2FoldChange": tt["logFC"],
            "lfcSE": tt["SE"],
            "stat": tt["t"],
            "pvalue": tt["P.Value"],
            "padj": tt["adj.P.Val"],
            "AveExpr": tt["AveExpr"],
            "t": tt["t"],
            "B": tt["B"],
        },
        index=adata.var_names,
    )
    if copy:
        adata = adata.copy()
    used = np.isfinite(v.sx)
    store_de_results(
        adata,
        key_added,
        results,
        method="limma_voom",
        params={
            "design": design,
            "contrast": contrast_label,
            "normalization": normalization,
            "layer": str(layer),
            "span": span,
            "proportion": proportion,
        },
        packages=("numpy", "scipy"),
        design=design,
        contrast=contrast_label,
        coefficients=list(x.columns),
        s2_prior=eb.s2_prior,
        df_prior=eb.df_prior,
        var_prior=float(eb.var_prior[0]),
        norm_factors=np.asarray(norm_factors, dtype=np.float64),
        lib_size=np.asarray(lib_size, dtype=np.float64),
        voom={
            "sx": v.sx[used],
            "sy": v.sy[used],
            "trend_x": v.trend_x,
            "trend_y": v.trend_y,
        },
    )
    return adata if copy else None
