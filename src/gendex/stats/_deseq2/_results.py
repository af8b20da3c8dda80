"""R DESeq2's ``results()``: Wald and LRT tables, Cook's filtering, independent filtering and BH."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from ..._lazy import map_blocks, map_slices
from .._lowess import lowess
from .._multitest import bh_adjust
from ._backend import single_threaded_blas
from ._fit import DESeq2Fit, _quiet, batches_per_block, block_plan, fitting_block
from ._glm import _Ctx, fit_glm

LOG2E = 1.0 / math.log(2.0)
#: Columns of every DESeq2 table (DESeq2's names, then gendex's ``na_reason``).
RESULT_COLUMNS = ("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj", "na_reason")
#: The values ``na_reason`` takes.
NA_REASONS = ("", "all_zero", "cooks_outlier", "independent_filtering")


# ----------------------------------------------------------------------------------------------------------------
# independent filtering (R's pvalueAdjustment + genefilter::filtered_p)
# ----------------------------------------------------------------------------------------------------------------
def independent_filtering(
    base_mean: np.ndarray, pvalue: np.ndarray, alpha: float
) -> tuple[np.ndarray, float, float, pd.DataFrame]:
    """R DESeq2's ``pvalueAdjustment`` with independent filtering on the mean of normalised counts.

    Returns ``(padj, filter_threshold, filter_theta, table of theta / number of rejections)``.
    """
    filt = np.asarray(base_mean, dtype=np.float64)
    lower = float(np.mean(filt == 0))
    upper = 0.95 if lower < 0.95 else 1.0
    theta = np.linspace(lower, upper, 50)
    cutoffs = np.quantile(filt, theta)
    padj_mat = np.full((filt.size, theta.size), np.nan)
    # BH of each filtered subset from one sort of all p-values (a subset of a sorted list stays sorted); tied
    # p-values get the same adjusted value in any order, so this equals bh_adjust on each subset
    pv = np.asarray(pvalue, dtype=np.float64)
    order = np.flatnonzero(np.isfinite(pv))
    order = order[np.argsort(pv[order], kind="stable")[::-1]]
    p_sorted, f_sorted = pv[order], filt[order]
    for i, cut in enumerate(cutoffs):
        keep = f_sorted >= cut
        m = int(keep.sum())
        if m:
            ranked = p_sorted[keep] * m / np.arange(m, 0, -1)
            padj_mat[order[keep], i] = np.minimum(1.0, np.minimum.accumulate(ranked))
    with np.errstate(invalid="ignore"):
        num_rej = np.sum(padj_mat < alpha, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # a flat number of rejections has zero MAD
        _, fit = lowess(theta, num_rej.astype(np.float64), f=1 / 5)
    if num_rej.max() <= 10:
        j = 0
    else:
        if np.all(num_rej == 0):
            residual = np.array([0.0])
        else:
            pos = num_rej > 0
            residual = num_rej[pos] - fit[pos]
        thresh = fit.max() - math.sqrt(float(np.mean(residual**2)))
        above = np.flatnonzero(num_rej > thresh)
        j = int(above[0]) if above.size else 0
    table = pd.DataFrame({"theta": theta, "numRej": num_rej})
    return padj_mat[:, j], float(cutoffs[j]), float(theta[j]), table


# ----------------------------------------------------------------------------------------------------------------
# shared table assembly
# ----------------------------------------------------------------------------------------------------------------
def _is_two_group(design: np.ndarray) -> bool:
    """R applies its Cook's heuristic when the design is one two-level factor: intercept + one 0/1 column."""
    if design.shape[1] != 2:
        return False
    icpt = np.all(design[:, 0] == 1)
    col = design[:, 1]
    return bool(icpt and np.all(np.isin(col, (0.0, 1.0))) and 0 < col.sum() < col.size)


def _finish(
    fit: DESeq2Fit,
    lfc: np.ndarray,
    se: np.ndarray,
    stat: np.ndarray,
    pvalue: np.ndarray,
    *,
    alpha: float,
    cooks_filter: bool,
    independent_filter: bool,
    gene_names: Sequence[str] | None,
) -> pd.DataFrame:
    pvalue = pvalue.copy()
    cooks_out = np.zeros(fit.n_genes, dtype=bool)
    if cooks_filter:
        with np.errstate(invalid="ignore"):
            cooks_out = np.nan_to_num(fit.max_cooks, nan=-np.inf) > fit.extras["cooks_cutoff"]
        if cooks_out.any() and _is_two_group(fit.design):
            genes = np.flatnonzero(cooks_out)
            cols = fit.original_counts(genes)
            for k, gi in enumerate(genes):
                if np.sum(cols[:, k] > cols[fit.cooks_argmax[gi], k]) >= 3:
                    cooks_out[gi] = False
        pvalue[cooks_out] = np.nan
    # genes whose replaced counts are all zero (R: LFC 0, SE 0, stat 0, p 1)
    now_zero = fit.replaced & (fit.base_mean == 0)
    lfc, se, stat = lfc.copy(), se.copy(), stat.copy()
    lfc[now_zero], se[now_zero], stat[now_zero], pvalue[now_zero] = 0.0, 0.0, 0.0, 1.0
    if independent_filter:
        padj, thr, theta, _ = independent_filtering(fit.base_mean, pvalue, alpha)
    else:
        padj, thr, theta = bh_adjust(pvalue), np.nan, np.nan
    reason = np.full(fit.n_genes, "", dtype=object)
    reason[np.isnan(padj) & ~np.isnan(pvalue)] = "independent_filtering"
    reason[cooks_out & ~fit.all_zero] = "cooks_outlier"
    reason[fit.all_zero] = "all_zero"
    index = pd.RangeIndex(fit.n_genes) if gene_names is None else pd.Index(list(gene_names), dtype=object)
    df = pd.DataFrame(
        {
            "baseMean": fit.base_mean,
            "log2FoldChange": lfc,
            "lfcSE": se,
            "stat": stat,
            "pvalue": pvalue,
            "padj": padj,
            "na_reason": reason,
        },
        index=index,
    )
    df.attrs.update(
        {"filterThreshold": thr, "filterTheta": theta, "alpha": alpha} if independent_filter else {"alpha": alpha}
    )
    return df


def _contrast_vector(fit: DESeq2Fit, contrast) -> np.ndarray:
    p = fit.design.shape[1]
    if isinstance(contrast, str):
        if contrast not in fit.coef_names:
            raise KeyError(f"coefficient {contrast!r} not in {fit.coef_names}")
        c = np.zeros(p)
        c[fit.coef_names.index(contrast)] = 1.0
        return c
    if isinstance(contrast, int | np.integer):
        if not 0 <= int(contrast) < p:
            raise IndexError(f"coefficient index {contrast} out of range for {p} coefficients")
        c = np.zeros(p)
        c[int(contrast)] = 1.0
        return c
    c = np.asarray(contrast, dtype=np.float64).ravel()
    if c.size != p:
        raise ValueError(f"a numeric contrast needs {p} elements (one per coefficient), got {c.size}")
    if np.all(c == 0):
        raise ValueError("a numeric contrast cannot have all elements equal to 0")
    return c


def deseq2_wald(
    fit: DESeq2Fit,
    contrast: str | int | ArrayLike,
    *,
    alpha: float = 0.05,
    cooks_filter: bool = True,
    independent_filter: bool = True,
    lfc_null: float = 0.0,
    alt_hypothesis: str | None = None,
    contrast_samples: tuple[ArrayLike, ArrayLike] | None = None,
    gene_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Wald test of a contrast, as R DESeq2's ``results()``.

    Parameters
    ----------
    fit
        The output of :func:`deseq2_fit`.
    contrast
        A coefficient name, a coefficient index, or a numeric vector with one weight per coefficient
        (natural-log scale coefficients, reported on the log2 scale).
    alpha
        Target FDR for independent filtering (R's ``alpha``; note that R's default is 0.1).
    cooks_filter
        Set p-values of genes with a Cook's outlier to NaN (R's ``cooksCutoff``).
    independent_filter
        Independent filtering on the mean of normalised counts (R's ``independentFiltering``).
    lfc_null, alt_hypothesis
        R's ``lfcThreshold`` (log2) and ``altHypothesis`` (``"greaterAbs"``, ``"lessAbs"``, ``"greater"``,
        ``"less"``; ``None`` = ``"greaterAbs"``).
    contrast_samples
        For a contrast between two levels of a factor (R's ``contrast=c(factor, level, ref)``): boolean masks of
        the samples at the tested and reference levels. Genes with zero counts in all of them get LFC 0 and
        p-value 1, as in R. Without it, R's rule for numeric contrasts is used.
    gene_names
        Index of the returned table (default: gene positions).

    Returns
    -------
    DataFrame with ``baseMean, log2FoldChange, lfcSE, stat, pvalue, padj, na_reason``; ``attrs`` holds
    ``filterThreshold`` and ``filterTheta`` of independent filtering.
    """
    c = _contrast_vector(fit, contrast)
    lfc = (fit.beta @ c) * LOG2E
    var = np.einsum("p,gpq,q->g", c, fit.beta_cov, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(np.maximum(var, 0.0)) * LOG2E
        if lfc_null < 0:
            raise ValueError(f"`lfc_null` must be >= 0, got {lfc_null}")
        alt = "greaterAbs" if alt_hypothesis is None else alt_hypothesis
        thr = float(lfc_null)
        if alt not in ("greaterAbs", "lessAbs", "greater", "less"):
            raise ValueError(f"unknown `alt_hypothesis` {alt_hypothesis!r}")
        if alt == "lessAbs" and thr == 0:
            raise ValueError("alt_hypothesis='lessAbs' needs a positive `lfc_null`")
        if thr == 0 and alt == "greaterAbs":
            stat = lfc / se
            pvalue = 2 * stats.norm.sf(np.abs(stat))
        elif alt == "greaterAbs":
            stat = np.sign(lfc) * np.maximum((np.abs(lfc) - thr) / se, 0)
            pvalue = np.minimum(1.0, 2 * stats.norm.sf((np.abs(lfc) - thr) / se))
        elif alt == "lessAbs":
            above = np.maximum((thr - lfc) / se, 0)
            below = np.maximum((lfc + thr) / se, 0)
            stat = np.minimum(above, below)
            pvalue = np.maximum(stats.norm.sf((thr - lfc) / se), stats.norm.sf((lfc + thr) / se))
        elif alt == "greater":
            stat = np.maximum((lfc - thr) / se, 0)
            pvalue = stats.norm.sf((lfc - thr) / se)
        else:
            stat = np.minimum((lfc + thr) / se, 0)
            pvalue = stats.norm.sf((-thr - lfc) / se)
    # R: genes with zero counts in every sample of the contrast get LFC 0, stat 0, p-value 1
    if contrast_samples is not None:
        num, den = (np.asarray(m, dtype=bool) for m in contrast_samples)
        involved = num | den
    elif np.any(c > 0) and np.any(c < 0):
        involved = (fit.design @ (c != 0).astype(np.float64)) != 0
    else:
        involved = None
    if involved is not None and involved.any():
        zero = (_totals(fit, involved) == 0) & ~fit.all_zero
        lfc[zero], stat[zero], pvalue[zero] = 0.0, 0.0, 1.0
    return _finish(
        fit,
        lfc,
        se,
        stat,
        pvalue,
        alpha=alpha,
        cooks_filter=cooks_filter,
        independent_filter=independent_filter,
        gene_names=gene_names,
    )


def _totals(fit: DESeq2Fit, involved: np.ndarray) -> np.ndarray:
    """Each gene's total count over the ``involved`` samples (integer sums: the same on dask counts)."""
    rows = np.flatnonzero(involved)
    if not fit.lazy:
        total = np.zeros(fit.n_genes, dtype=np.int64)
        for start in range(0, rows.size, 256):  # blocks of samples: no copy of the whole count matrix
            total += fit.counts[rows[start : start + 256]].sum(0)
        return total
    cells, cell_totals = fit.extras["cells"], fit.extras["cell_totals"]
    share, size = np.bincount(cells, weights=involved), np.bincount(cells)
    if np.all((share == 0) | (share == size)):  # whole cells of the design: from the totals the fit kept
        return cell_totals[share > 0].sum(0)
    return np.concatenate(map_blocks(lambda block, _: block[rows].sum(0, dtype=np.int64), fit.counts, n_arrays=1))


def _reduced_loglik_lazy(fit: DESeq2Fit, ctx: _Ctx, nz: np.ndarray, batch: int) -> np.ndarray:
    """The reduced model's log-likelihood of genes ``nz`` in gene blocks of dask counts (in-memory batches)."""
    where, groups = block_plan(fit.n_genes, nz, batch, batches_per_block(fit.n_samples, batch, nz.size))
    plan = {sl.start: grp for sl, grp in zip(where, groups, strict=True)}
    rep_idx, rep_counts, disp = fit.replace_gene_idx, fit.replace_counts, fit.dispersions

    def block_loglik(block: np.ndarray, sl: slice) -> list[np.ndarray]:
        out = []
        for idx in plan[sl.start]:
            y = ctx.t(fitting_block(block, sl.start, idx, rep_idx, rep_counts).T)
            out.append(ctx.np(fit_glm(y, ctx.t(disp[idx]), ctx).loglik))
        return out

    parts = map_slices(_quiet(block_loglik), fit.counts, where)
    return np.concatenate([np.zeros(0), *(ll for part in parts for ll in part)])


def deseq2_lrt(
    fit: DESeq2Fit,
    reduced_design: ArrayLike,
    *,
    alpha: float = 0.05,
    cooks_filter: bool = True,
    independent_filter: bool = True,
    gene_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Likelihood-ratio test of the full design of ``fit`` against ``reduced_design``, as R's ``nbinomLRT``.

    The reduced model is fitted with the final dispersions of the full model (R's ``DESeq(test="LRT")``);
    ``stat`` is twice the log-likelihood difference, compared to a chi-squared distribution with
    ``p_full - p_reduced`` degrees of freedom. ``log2FoldChange``/``lfcSE`` are the last coefficient of the
    full design, as R reports them.

    Parameters
    ----------
    fit
        The output of :func:`deseq2_fit` (the full model).
    reduced_design
        Samples x coefficients reduced design, nested in the full one.
    alpha, cooks_filter, independent_filter, gene_names
        As in :func:`deseq2_wald`.

    Returns
    -------
    DataFrame with ``baseMean, log2FoldChange, lfcSE, stat, pvalue, padj, na_reason``.
    """
    xr = np.asarray(reduced_design, dtype=np.float64)
    if xr.ndim == 1:
        xr = xr[:, None]
    n, p = fit.design.shape
    if xr.shape[0] != n:
        raise ValueError(f"`reduced_design` must have {n} rows, got {xr.shape[0]}")
    df = p - xr.shape[1]
    if df < 1:
        raise ValueError("the reduced design must have fewer columns than the full design")
    if np.linalg.matrix_rank(xr) < xr.shape[1]:
        raise ValueError("the reduced design is not of full column rank")
    ll_red = np.full(fit.n_genes, np.nan)
    nz = np.flatnonzero(~fit.all_zero & np.isfinite(fit.dispersions) & np.isfinite(fit.log_likelihood))
    ctx = _Ctx(
        xr,
        fit.size_factors,
        min_mu=fit.min_mu,
        min_disp=fit.min_disp,
        max_disp=fit.max_disp,
        beta_tol=fit.beta_tol,
        device=fit.device,
    )
    chunk = max(1, int(4_000_000 // n))
    with np.errstate(all="ignore"), single_threaded_blas():
        if fit.lazy:
            ll_red[nz] = _reduced_loglik_lazy(fit, ctx, nz, chunk)
        else:
            for start in range(0, nz.size, chunk):
                idx = nz[start : start + chunk]
                y = ctx.t(fit.fitting_counts(idx).T)
                a = ctx.t(fit.dispersions[idx])
                ll_red[idx] = ctx.np(fit_glm(y, a, ctx).loglik)
        stat = 2.0 * (fit.log_likelihood - ll_red)
        pvalue = stats.chi2.sf(stat, df)
    lfc = fit.beta[:, -1] * LOG2E
    se = fit.beta_se[:, -1] * LOG2E
    out = _finish(
        fit,
        lfc,
        se,
        stat,
        pvalue,
        alpha=alpha,
        cooks_filter=cooks_filter,
        independent_filter=independent_filter,
        gene_names=gene_names,
    )
    out.attrs["df"] = df
    return out


def na_reasons(
    all_zero: NDArray[np.bool_], pvalue: NDArray[np.float64], padj: NDArray[np.float64]
) -> NDArray[np.object_]:
    """Why ``pvalue``/``padj`` is NaN: ``"all_zero"``, ``"cooks_outlier"``, ``"independent_filtering"`` or ``""``."""
    pvalue = np.asarray(pvalue, dtype=np.float64)
    padj = np.asarray(padj, dtype=np.float64)
    reason = np.full(pvalue.shape, "", dtype=object)
    reason[np.isnan(pvalue)] = "cooks_outlier"
    reason[np.isfinite(pvalue) & np.isnan(padj)] = "independent_filtering"
    reason[np.asarray(all_zero, dtype=bool)] = "all_zero"
    return reason
