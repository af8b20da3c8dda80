"""``tl.deseq2``: DESeq2 differential expression on an AnnData (batched engine or PyDESeq2)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._contrast import keyword_design
from .._design import design_matrix
from .._utils import store_de_results
from ..stats._deseq2 import NA_REASONS, RESULT_COLUMNS, na_reasons
from ._deseq2_request import _Outcome, _Request, _validate
from ._pydeseq2 import _run_pydeseq2, _shrink_batched

if TYPE_CHECKING:
    from pydeseq2.inference import Inference

logger = logging.getLogger(__name__)

#: The per-gene dispersions of the fit, stored as columns of every result table (PyDESeq2's names).
DISPERSION_COLUMNS = ("dispersions", "genewise_dispersions", "fitted_dispersions", "MAP_dispersions")

__all__ = ["DISPERSION_COLUMNS", "NA_REASONS", "RESULT_COLUMNS", "deseq2", "na_reasons"]


def deseq2(
    adata: AnnData,
    *args: str,
    design: str | None = None,
    contrast: Sequence[str] | Sequence[Sequence[str]] | None = None,
    layer: str | None = "counts",
    alpha: float = 0.05,
    cooks_filter: bool = True,
    independent_filter: bool = True,
    test: Literal["wald", "lrt"] = "wald",
    reduced: str | None = None,
    shrink: Literal["normal", "ashr", "apeglm"] | None = None,
    svalue: bool = False,
    inference: Literal["batched", "pydeseq2"] | Inference = "batched",
    fit_type: Literal["parametric", "mean", "local"] = "parametric",
    min_replicates: int = 7,
    refit_cooks: bool = True,
    n_cpus: int | None = None,
    device: str = "cpu",
    key_added: str | Sequence[str] | None = None,
    copy: bool = False,
) -> AnnData | None:
    """DESeq2 differential expression: size factors, dispersions, NB GLM, Wald test or likelihood-ratio test.

    The model is fitted once; each contrast is a Wald test on that fit (several contrasts reuse it). With
    ``test="lrt"`` the genes are tested with a likelihood-ratio test of the full ``design`` against the
    nested ``reduced`` design, as R's ``DESeq(dds, test="LRT", reduced=...)`` does.

    Parameters
    ----------
    adata
        Samples x genes AnnData with raw counts (non-negative integers, dense or sparse). The counts may be a dask
        array (e.g. from :func:`anndata.experimental.read_lazy` or :func:`dask.array.from_zarr`): the batched
        engine then reads them in blocks of whole genes as dask tasks on the active scheduler (threads, or a
        :class:`dask.distributed.Client` when one is active), never holding more than a few blocks, and gives the
        same results as on the counts in memory. ``inference="pydeseq2"``, ``shrink="normal"``/``"apeglm"`` and
        devices other than the CPU need the counts in memory and are refused.
    *args
        Deprecated: the design given positionally (``gdx.tl.deseq2(adata, "~condition")``) still works in 0.1, with
        a :class:`FutureWarning`; pass ``design=``.
    design
        Formula over ``obs`` columns, e.g. ``"~celltype + status"`` (default ``"~condition"``). Categorical factors
        use treatment coding with the first category (alphabetical for strings) as reference.
    contrast
        ``[factor, test_level, reference_level]``, or a list of them. The factor must be in ``design``.
        None tests the last coefficient of the design (R's default), e.g. ``["condition", "B", "A"]``. With
        ``test="lrt"`` at most one contrast may be given; it only chooses which log2 fold change (and SE) is
        reported beside the LRT statistic (default: the last coefficient, as R does).
    layer
        Layer with the raw counts; None means ``X``.
    alpha
        Significance level used by independent filtering (DESeq2's ``alpha``).
    cooks_filter
        Set the p-values of genes with a Cook's distance outlier to NaN (``na_reason="cooks_outlier"``).
    independent_filter
        Independent filtering of low-mean genes (their ``padj`` is NaN, ``na_reason="independent_filtering"``);
        when False, plain Benjamini-Hochberg over all tested genes.
    test
        ``"wald"`` (one result per contrast) or ``"lrt"`` (one result, needs ``reduced``).
    reduced
        Reduced design for the LRT, nested in ``design`` (its coefficients are a subset), e.g. ``"~celltype"``.
    shrink
        Shrink the log2 fold changes and their SEs as R's ``lfcShrink`` (``stat``/``pvalue``/``padj`` stay
        unshrunk; the MLEs are kept as ``log2FoldChange_unshrunk``/``lfcSE_unshrunk``):
        ``"normal"``: R's ``type="normal"`` (a normal prior on the expanded model matrix; batched engine; any
        ``[factor, test, reference]`` contrast of a design without interactions); equal to R to 1e-6.
        ``"ashr"``: adaptive shrinkage of the MLE and its SE (:func:`gendex.stats.ash`, R's ``type="ashr"``);
        any Wald contrast; adds ``lfsr`` (and ``svalue`` with ``svalue=True``).
        ``"apeglm"``: PyDESeq2's apeGLM (``DeseqStats.lfc_shrink``) of one coefficient; with
        ``inference="batched"`` any two-level contrast works (the model is refitted with the contrast's
        reference as the factor's reference level, as R users re-level for apeglm).
    svalue
        With ``shrink="ashr"``: add an ``svalue`` column (R's ``svalue=TRUE``).
    inference
        ``"batched"``: gendex's vectorised DESeq2 engine (:mod:`gendex.stats`), which follows R's DESeq2.
        ``"pydeseq2"``: PyDESeq2's ``DeseqDataSet``/``DeseqStats`` with its default inference. A
        :class:`pydeseq2.inference.Inference` instance: PyDESeq2 with that inference backend.
    fit_type
        Dispersion trend: ``"parametric"`` (``a0 + a1 / mean``), ``"mean"``, or ``"local"`` (batched engine only:
        R's ``locfit`` trend, ported).
    min_replicates
        Samples per group needed to replace Cook's outliers and refit (DESeq2's ``minReplicatesForReplace``).
    refit_cooks
        Replace Cook's outliers in groups with at least ``min_replicates`` samples and refit those genes.
    n_cpus
        Processes PyDESeq2 may use (``inference="pydeseq2"``). None means the CPUs available to this process.
        Ignored by the batched engine and by an ``Inference`` instance (configure that object yourself).
    device
        Where the batched engine computes: ``"cpu"`` (numpy), ``"torch"`` (torch on the CPU) or a torch device
        such as ``"cuda"``; always float64. Only used with ``inference="batched"``.
    key_added
        Where to store the results. One result: a name (default ``"deseq2"``, ``"deseq2_lrt"`` for the LRT).
        Several contrasts: a list with one name each, or a prefix (default ``"deseq2"``) giving
        ``f"{prefix}_{test_level}_vs_{reference_level}"``.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Returns None, or the modified copy when ``copy=True``, and sets, for each result key (nothing outside them:
    two fits with different designs and keys never overwrite each other):

    ``adata.varm[key]`` (:class:`~pandas.DataFrame`, one per contrast)
        Indexed by ``var_names``, columns ``baseMean, log2FoldChange, lfcSE, stat, pvalue, padj`` (DESeq2's
        names; log2 scale) and ``na_reason`` (``""``, ``"all_zero"``, ``"cooks_outlier"``,
        ``"independent_filtering"``: why ``pvalue``/``padj`` is NaN). With ``shrink`` also
        ``log2FoldChange_unshrunk`` and ``lfcSE_unshrunk``. For the LRT ``stat`` is the LRT statistic. Then the
        fit's ``dispersions``, ``genewise_dispersions``, ``fitted_dispersions`` and ``MAP_dispersions`` (final,
        gene-wise MLE, trend and maximum a posteriori; NaN for all-zero genes).
    ``adata.uns[key]`` (dict)
        ``method`` (``"deseq2"``), ``inference``, ``design``, ``contrast``, ``test``, ``reduced``,
        ``params``, ``versions``, ``size_factors`` (the fit's median-of-ratios size factors, an array in
        ``obs_names`` order), the dispersion ``trend_coeffs`` and ``prior_disp_var`` where available.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=300)
    >>> gdx.tl.deseq2(adata, design="~condition", contrast=["condition", "B", "A"])  # doctest: +SKIP
    >>> gdx.get.de_results(adata, "deseq2").sort_values("padj").head()  # doctest: +SKIP
    """
    design = keyword_design(args, design, "gendex.tl.deseq2", default="~condition")
    assert design is not None  # the default fills it
    req = _validate(
        adata,
        design=design,
        contrast=contrast,
        layer=layer,
        alpha=alpha,
        cooks_filter=cooks_filter,
        independent_filter=independent_filter,
        test=test,
        reduced=reduced,
        shrink=shrink,
        svalue=svalue,
        inference=inference,
        fit_type=fit_type,
        min_replicates=min_replicates,
        refit_cooks=refit_cooks,
        n_cpus=n_cpus,
        device=device,
        key_added=key_added,
    )
    if req.inference == "batched":
        outcome = _run_batched(req)
    else:
        outcome = _run_pydeseq2(req)
    if req.params["shrink"] == "ashr":
        _shrink_ashr(req, outcome)

    if copy:
        adata = adata.copy()
    _write(adata, req, outcome)
    return adata if copy else None


# --------------------------------------------------------------------------------------------------------------
# batched engine path


def _run_batched(req: _Request) -> _Outcome:
    from ..stats._deseq2 import deseq2_fit, deseq2_lrt, deseq2_wald

    fit = deseq2_fit(
        req.counts,
        req.design_df.to_numpy(),
        coef_names=list(req.design_df.columns),
        fit_type=req.params["fit_type"],
        min_replicates=req.params["min_replicates"],
        refit_cooks=req.params["refit_cooks"],
        device=req.params["device"],
        nonzero_genes=req.nonzero_genes,
    )
    tests = {
        "alpha": req.params["alpha"],
        "cooks_filter": req.params["cooks_filter"],
        "independent_filter": req.params["independent_filter"],
    }
    tables: list[pd.DataFrame] = []
    infos: list[dict[str, Any]] = []
    for contrast, vec, coef, masks in zip(req.contrasts, req.vectors, req.shrink_coefs, req.masks, strict=True):
        info: dict[str, Any]
        if req.test == "lrt":
            assert req.reduced_df is not None  # validated: test="lrt" needs `reduced`
            table = deseq2_lrt(fit, req.reduced_df.to_numpy(), **tests)
            if req.contrast_given:  # R's results(dds, contrast=...) of an LRT fit: that contrast's LFC and SE
                wald = deseq2_wald(fit, vec, contrast_samples=masks, **tests)
                table["log2FoldChange"] = wald["log2FoldChange"].to_numpy()
                table["lfcSE"] = wald["lfcSE"].to_numpy()
            info = {**_filter_info(table), "lrt_df": int(table.attrs.get("df", 0))}
        else:
            table = deseq2_wald(fit, vec, contrast_samples=masks, **tests)
            info = _filter_info(table)
        table = pd.DataFrame({c: table[c].to_numpy() for c in RESULT_COLUMNS}, index=req.var_names)
        if coef is not None:
            sreq, sfit = _relevelled(req, contrast)
            table = _shrink_batched(sreq, fit if sfit is None else sfit, contrast, coef, table)
            info["shrink_coefficient"] = coef
            info["shrink_method"] = "PyDESeq2 DeseqStats.lfc_shrink (apeGLM) on the batched fit" + (
                "" if sfit is None else f", refitted with reference level {contrast[2]!r}"
            )
        elif req.params["shrink"] == "normal" and req.test == "wald":
            table, extra = _shrink_normal(req, fit, contrast, table)
            info.update(extra)
        tables.append(table)
        infos.append(info)

    fit_info: dict[str, Any] = {"disp_function_type": str(fit.fit_type), "prior_disp_var": float(fit.prior_disp_var)}
    coeffs = np.asarray(fit.trend_coeffs, dtype=np.float64).ravel()
    if coeffs.size == 2 and np.all(np.isfinite(coeffs)):
        fit_info["trend_coeffs"] = {"a0": float(coeffs[0]), "a1": float(coeffs[1])}
    fit_info["n_dispersion_outliers"] = int(np.nansum(fit.disp_outlier))
    fit_info["n_refitted"] = int(np.sum(fit.refitted))
    var_columns = {
        "dispersions": fit.dispersions,
        "genewise_dispersions": fit.genewise_dispersions,
        "fitted_dispersions": fit.fitted_dispersions,
        "MAP_dispersions": fit.map_dispersions,
    }
    return _Outcome(
        size_factors=np.asarray(fit.size_factors, dtype=np.float64),
        var_columns=var_columns,
        tables=tables,
        fit_info=fit_info,
        result_info=infos,
    )


def _shrink_ashr(req: _Request, outcome: _Outcome) -> None:
    """R's ``lfcShrink(type="ashr")`` on every table: ashr's posterior mean and sd, lfsr (and s-values)."""
    from ..stats._deseq2._shrink import ashr_shrink

    for i, table in enumerate(outcome.tables):
        lfc = table["log2FoldChange"].to_numpy(dtype=np.float64)
        se = table["lfcSE"].to_numpy(dtype=np.float64)
        mean, sd, lfsr, sval = ashr_shrink(lfc, se)
        out = table.copy()
        out["log2FoldChange"], out["lfcSE"] = mean, sd
        out["log2FoldChange_unshrunk"], out["lfcSE_unshrunk"] = lfc, se
        out["lfsr"] = lfsr
        if req.params["svalue"]:
            out["svalue"] = sval
        outcome.tables[i] = out
        outcome.result_info[i]["shrink_method"] = "ashr (gendex.stats.ash: normal mixture, null weight 10)"


def _shrink_normal(req: _Request, fit: Any, comparison: list[str], table: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    from ..stats._deseq2._shrink import normal_shrink

    lfc, se, info = normal_shrink(fit, req.design_df, req.obs, comparison)
    out = table.copy()
    out["log2FoldChange_unshrunk"] = table["log2FoldChange"].to_numpy()
    out["lfcSE_unshrunk"] = table["lfcSE"].to_numpy()
    out["log2FoldChange"], out["lfcSE"] = lfc, se
    return out, {"shrink_method": "normal prior on the expanded model matrix (R's lfcShrink type='normal')", **info}


def _relevelled(req: _Request, comparison: list[str]) -> tuple[_Request, Any]:
    """The request and batched fit with ``comparison``'s reference as its factor's first level (for apeGLM)."""
    from ..stats._deseq2 import deseq2_fit

    factor, _, ref = comparison
    cats = [str(c) for c in req.obs[factor].cat.categories]
    if cats[0] == ref:
        return req, None
    obs = req.obs.copy()
    obs[factor] = obs[factor].cat.reorder_categories(
        [c for c in req.obs[factor].cat.categories if str(c) == ref]
        + [c for c in req.obs[factor].cat.categories if str(c) != ref]
    )
    x = design_matrix(obs, req.design)
    x.index = req.design_df.index
    new = dataclasses.replace(req, obs=obs, design_df=x)
    fit = deseq2_fit(
        req.counts,
        x.to_numpy(),
        coef_names=list(x.columns),
        fit_type=req.params["fit_type"],
        min_replicates=req.params["min_replicates"],
        refit_cooks=req.params["refit_cooks"],
        device=req.params["device"],
    )
    return new, fit


def _filter_info(table: pd.DataFrame) -> dict[str, Any]:
    out = {}
    for name, key in (("filterThreshold", "filter_threshold"), ("filterTheta", "filter_theta")):
        value = table.attrs.get(name)
        if value is not None and np.isfinite(value):
            out[key] = float(value)
    return out


# --------------------------------------------------------------------------------------------------------------
# writing


def _write(adata: AnnData, req: _Request, outcome: _Outcome) -> None:
    """Everything the fit produced goes under each result's key: nothing shared is overwritten."""
    size_factors = np.asarray(outcome.size_factors, dtype=np.float64)
    for key, contrast, table, info in zip(req.keys, req.contrasts, outcome.tables, outcome.result_info, strict=True):
        table = table.copy()
        table.index = req.var_names
        for name in DISPERSION_COLUMNS:
            table[name] = np.asarray(outcome.var_columns[name], dtype=np.float64)
        extra: dict[str, Any] = {
            "inference": req.params["inference"],
            "design": req.design,
            "design_columns": list(req.design_df.columns),
            "contrast": list(contrast),
            "test": req.test,
            "reduced": req.reduced,
            "size_factors": size_factors,
            **outcome.fit_info,
            **info,
        }
        store_de_results(
            adata,
            key,
            table,
            method="deseq2",
            params=req.params,
            packages=("pydeseq2", "numpy", "scipy"),
            **extra,
        )
