"""The PyDESeq2 adapter of ``tl.deseq2``: ``DeseqDataSet``/``DeseqStats`` runs, apeGLM shrinkage, the LRT.

All PyDESeq2 objects are built here, on a new AnnData holding the validated counts (never the caller's object).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ..stats._deseq2 import glm_loglik, na_reasons
from ._deseq2_request import _Outcome, _Request

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from pydeseq2.inference import Inference

logger = logging.getLogger(__name__)


@contextmanager
def _pydeseq2_quiet() -> Iterator[None]:
    """Silence numpy's RuntimeWarnings raised inside PyDESeq2 code (overflow in exp, log of 0), nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"pydeseq2(\.|$)")
        yield


def _deseq_stats(dds: Any, contrast: Any, req: _Request, inference: Inference) -> Any:
    """The one place a ``DeseqStats`` is built: the validated test settings, quiet."""
    from pydeseq2.ds import DeseqStats

    return DeseqStats(
        dds,
        contrast=contrast,
        alpha=req.params["alpha"],
        cooks_filter=req.params["cooks_filter"],
        independent_filter=req.params["independent_filter"],
        inference=inference,
        quiet=True,
    )


def _fresh_anndata(req: _Request) -> AnnData:
    """A new AnnData with the validated counts and design factors: DeseqDataSet copies and writes into it."""
    return AnnData(X=req.counts.copy(), obs=req.obs.copy(), var=pd.DataFrame(index=req.var_names.astype(str)))


def _fit_pydeseq2(req: _Request) -> Any:
    """``DeseqDataSet(...).deseq2()`` on a new AnnData holding the validated counts and design factors."""
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference

    if isinstance(req.inference, str):
        inference = DefaultInference(n_cpus=req.n_cpus)
    else:
        inference = req.inference
    fresh = _fresh_anndata(req)
    with _pydeseq2_quiet():
        dds = DeseqDataSet(
            adata=fresh,
            design=req.design,
            fit_type=req.params["fit_type"],
            refit_cooks=req.params["refit_cooks"],
            min_replicates=req.params["min_replicates"],
            inference=inference,
            quiet=True,
        )
        dds.deseq2()
    coef_names = [str(c) for c in dds.varm["LFC"].columns]
    if coef_names != list(req.design_df.columns):
        raise RuntimeError(
            f"PyDESeq2's coefficients {coef_names} differ from the design's {list(req.design_df.columns)}"
        )
    return dds


def _run_pydeseq2(req: _Request) -> _Outcome:
    dds = _fit_pydeseq2(req)
    inference = dds.inference
    all_zero = req.counts.sum(axis=0) == 0
    tables: list[pd.DataFrame] = []
    infos: list[dict[str, Any]] = []
    if req.test == "wald":
        for comparison, vec, coef in zip(req.comparisons, req.vectors, req.shrink_coefs, strict=True):
            with _pydeseq2_quiet():
                ds = _deseq_stats(dds, list(comparison) if comparison else np.asarray(vec), req, inference)
                ds.summary()
            table = _pydeseq2_table(ds.results_df, all_zero)
            info: dict[str, Any] = {}
            if coef is not None:
                table = _apply_shrink(ds, coef, table)
                info["shrink_coefficient"] = coef
            tables.append(table)
            infos.append(info)
    else:
        table, info = _pydeseq2_lrt(req, dds, all_zero)
        tables.append(table)
        infos.append(info)

    fit_info: dict[str, Any] = {"disp_function_type": str(dds.uns.get("disp_function_type", req.params["fit_type"]))}
    if "trend_coeffs" in dds.uns:
        fit_info["trend_coeffs"] = {str(k): float(v) for k, v in dds.uns["trend_coeffs"].items()}
    if "mean_disp" in dds.uns:
        fit_info["mean_disp"] = float(dds.uns["mean_disp"])
    if "prior_disp_var" in dds.uns:
        fit_info["prior_disp_var"] = float(dds.uns["prior_disp_var"])
    var_columns = {
        name: dds.var[name].to_numpy(dtype=np.float64)
        for name in ("dispersions", "genewise_dispersions", "fitted_dispersions", "MAP_dispersions")
    }
    return _Outcome(
        size_factors=dds.obs["size_factors"].to_numpy(dtype=np.float64),
        var_columns=var_columns,
        tables=tables,
        fit_info=fit_info,
        result_info=infos,
    )


def _pydeseq2_table(results: pd.DataFrame, all_zero: NDArray[np.bool_]) -> pd.DataFrame:
    table = results[["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]].astype(np.float64).copy()
    table["na_reason"] = na_reasons(all_zero, table["pvalue"].to_numpy(), table["padj"].to_numpy())
    return table


def _apply_shrink(ds: Any, coef: str, table: pd.DataFrame) -> pd.DataFrame:
    """Run PyDESeq2's apeGLM on ``coef`` of a summarised ``DeseqStats``; keep the unshrunk columns beside."""
    unshrunk = table[["log2FoldChange", "lfcSE"]].to_numpy(copy=True)
    with _pydeseq2_quiet():
        # 0.5.4 warns (UserWarning) about genes whose shrinkage is not finite and keeps their MLE: log it instead.
        with warnings.catch_warnings(record=True) as caught:
            warnings.filterwarnings("always", message=r".*during LFC shrinkage.*", category=UserWarning)
            ds.lfc_shrink(coef)
        for w in caught:
            if "during LFC shrinkage" in str(w.message):
                logger.warning("PyDESeq2 apeGLM: %s", w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    out = table.copy()
    out["log2FoldChange"] = ds.results_df["log2FoldChange"].to_numpy(dtype=np.float64)
    out["lfcSE"] = ds.results_df["lfcSE"].to_numpy(dtype=np.float64)
    out["log2FoldChange_unshrunk"] = unshrunk[:, 0]
    out["lfcSE_unshrunk"] = unshrunk[:, 1]
    return out


def _pydeseq2_lrt(req: _Request, dds: Any, all_zero: NDArray[np.bool_]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """LRT on PyDESeq2's fit: both GLMs refitted by the batched engine at PyDESeq2's size factors and dispersions.

    The log2 fold change and its SE come from PyDESeq2's Wald test of the reported contrast; Cook's filtering and
    independent filtering are PyDESeq2's (``DeseqStats``), applied to the LRT p-values.
    """
    from scipy import stats

    sf = dds.obs["size_factors"].to_numpy(dtype=np.float64)
    disp = dds.var["dispersions"].to_numpy(dtype=np.float64)
    fitting_counts = req.counts.astype(np.float64)
    if "replaced" in dds.var and bool(dds.var["replaced"].any()) and hasattr(dds, "counts_to_refit"):
        replaced = np.flatnonzero(dds.var["replaced"].to_numpy(dtype=bool))
        fitting_counts[:, replaced] = np.asarray(dds.counts_to_refit.X, dtype=np.float64)
    assert req.reduced_df is not None  # validated: test="lrt" needs `reduced`
    ll_full = glm_loglik(fitting_counts, req.design_df.to_numpy(), sf, disp)
    ll_red = glm_loglik(fitting_counts, req.reduced_df.to_numpy(), sf, disp)
    df = req.design_df.shape[1] - req.reduced_df.shape[1]
    with np.errstate(invalid="ignore"):
        stat = 2.0 * (ll_full - ll_red)
        pvalue = stats.chi2.sf(stat, df)
    with _pydeseq2_quiet():
        ds = _deseq_stats(dds, req.vectors[0], req, dds.inference)
        ds.run_wald_test()
        ds.statistics = pd.Series(stat, index=dds.var_names)
        ds.p_values = pd.Series(pvalue, index=dds.var_names)
        ds.summary()  # keeps our p-values (no new Wald test), applies Cook's and independent filtering
    table = _pydeseq2_table(ds.results_df, all_zero)
    return table, {"lrt_df": int(df), "lrt_glm": "gendex batched engine at PyDESeq2's size factors and dispersions"}


def _shrink_batched(req: _Request, fit: Any, contrast: list[str], coef: str, table: pd.DataFrame) -> pd.DataFrame:
    """PyDESeq2's apeGLM (``DeseqStats.lfc_shrink``) on a ``DeseqDataSet`` holding the batched engine's fit."""
    from pydeseq2.dds import DeseqDataSet

    inference = _shrink_inference(req)
    fresh = _fresh_anndata(req)
    with _pydeseq2_quiet():
        dds = DeseqDataSet(adata=fresh, design=req.design, refit_cooks=False, inference=inference, quiet=True)
    non_zero = ~np.asarray(fit.all_zero, dtype=bool)
    dds.obs["size_factors"] = np.asarray(fit.size_factors, dtype=np.float64)
    dds.var["_normed_means"] = np.asarray(fit.base_mean, dtype=np.float64)
    dds.var["dispersions"] = np.asarray(fit.dispersions, dtype=np.float64)
    dds.var["non_zero"] = non_zero
    dds.non_zero_idx = np.flatnonzero(non_zero)
    dds.non_zero_genes = dds.var_names[non_zero]
    dds.varm["LFC"] = pd.DataFrame(
        np.asarray(fit.beta, dtype=np.float64), index=dds.var_names, columns=list(req.design_df.columns)
    )
    ds = _deseq_stats(dds, list(contrast), req, inference)
    # the Wald results are the engine's; PyDESeq2 only shrinks the coefficient
    ds.SE = pd.Series(table["lfcSE"].to_numpy() * np.log(2), index=dds.var_names)
    ds.results_df = pd.DataFrame(
        {"log2FoldChange": table["log2FoldChange"].to_numpy(), "lfcSE": table["lfcSE"].to_numpy()},
        index=dds.var_names,
    )
    return _apply_shrink(ds, coef, table)


def _shrink_inference(req: _Request) -> Inference:
    from ._pydeseq2_inference import BatchedInference

    return BatchedInference()
