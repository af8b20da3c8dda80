"""LFC shrinkage of R DESeq2's ``lfcShrink``: ``type="normal"`` (any factor contrast) and ``type="ashr"``.

``normal`` (Love et al. 2014): a zero-centred normal prior on every non-intercept coefficient of the *expanded*
model matrix (an intercept plus one column per level of every factor), its variance matched to the upper 5% of
the weighted maximum-likelihood fold changes and averaged over each factor's levels and pairwise contrasts; the
GLM is refitted with that ridge and the contrast read off the expanded coefficients. ``ashr`` (Stephens 2017):
adaptive shrinkage of the MLE fold changes given their standard errors (:func:`gendex.stats.ash`), with
local false sign rates and s-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import _kernels as K
from ._backend import get_backend, single_threaded_blas
from ._fit import DESeq2Fit
from ._optim import optim_row
from ._transform import _weighted_upper_quantile_variance

LOG2E = 1.0 / math.log(2.0)
_CHUNK = 4096


def expanded_design(obs: pd.DataFrame, design: pd.DataFrame) -> tuple[np.ndarray, list[str], dict[str, list[str]]]:
    """R's ``makeExpandedModelMatrix``: intercept, every level of every factor, continuous covariates as they are.

    ``design`` comes from :func:`gendex._design.design_matrix` (it carries the formula's term structure).
    Returns ``(matrix, column names, {factor: its columns})``; names are ``"factor[level]"``.
    """
    spec = design.attrs.get("model_spec")
    if spec is None:
        raise ValueError("normal shrinkage needs the design's formula (a matrix from gendex's design_matrix)")
    cols: list[np.ndarray] = []
    names: list[str] = []
    levels_of: dict[str, list[str]] = {}
    for term in spec.structure:
        variables = sorted(str(v) for v in spec.term_variables[term.term]) if str(term.term) != "1" else []
        if not variables:
            cols.append(np.ones(design.shape[0]))
            names.append("Intercept")
            continue
        if len(variables) > 1:
            raise ValueError(
                "shrink='normal' is not defined for designs with interactions (R's lfcShrink refuses them too); "
                "use shrink='ashr' or 'apeglm'"
            )
        var = variables[0]
        values = obs[var]
        if isinstance(values.dtype, pd.CategoricalDtype):
            levels_of[var] = []
            for level in values.cat.categories:
                cols.append((values.astype(str).to_numpy() == str(level)).astype(np.float64))
                names.append(f"{var}[{level}]")
                levels_of[var].append(names[-1])
        else:
            for c in term.columns:
                cols.append(design[c].to_numpy(dtype=np.float64))
                names.append(str(c))
    if "Intercept" not in names:
        raise ValueError("shrink='normal' needs a design with an intercept (R's expanded model matrix has one)")
    return np.column_stack(cols), names, levels_of


def _beta_prior_var(fit: DESeq2Fit, design: pd.DataFrame, names: list[str], levels_of: dict[str, list[str]]):
    """R's ``estimateBetaPriorVar`` for the expanded model matrix (``betaPriorMethod = "weighted"``)."""
    nz = ~fit.all_zero
    mle = fit.beta[nz] * LOG2E  # (G, p) log2, standard design
    std_cols = [str(c) for c in design.columns]
    weights = 1.0 / (1.0 / fit.base_mean[nz] + fit.fitted_dispersions[nz])
    columns: dict[str, list[np.ndarray]] = {}
    for j, col in enumerate(std_cols):
        columns.setdefault(col, []).append(mle[:, j])
    # addAllContrasts: pairwise differences of a factor's (non-reference) coefficients
    for var in levels_of:
        own = [std_cols.index(c) for c in std_cols if c.startswith(f"{var}[T.")]
        m = len(own)
        if m > 1:
            pairs = [(i, j) for j in range(m - 1) for i in range(j + 1, m)]
            columns[f"{var}:contrasts"] = [mle[:, own[i]] - mle[:, own[j]] for i, j in pairs]

    def prior_var(x: np.ndarray) -> float:
        ok = np.abs(x) < 10
        if not ok.any():
            return 1e6
        return _weighted_upper_quantile_variance(x[ok], weights[ok])

    var_of = {c: [prior_var(x) for x in xs] for c, xs in columns.items()}
    out = np.empty(len(names))
    for k, name in enumerate(names):
        if name == "Intercept":
            out[k] = 1e6
            continue
        factor = next((v for v, cols in levels_of.items() if name in cols), None)
        if factor is None:
            out[k] = var_of[name][0]
            continue
        pool = [v for c in std_cols if c.startswith(f"{factor}[T.") for v in var_of[c]]
        pool += var_of.get(f"{factor}:contrasts", [])
        out[k] = float(np.mean(pool))
    if np.any(~np.isfinite(out)) or np.any(out <= 0):
        raise ValueError("the normal prior's variance is not positive for some coefficient")
    return out


def _optim_failures(bf, beta, cov_soa, beta0, y, fit, idx, mm, prior, ops) -> None:
    """R's fallback for genes whose IRLS did not converge: L-BFGS-B on the penalised likelihood (in place)."""
    iters = np.asarray(bf.iters)
    stable = ~np.isnan(beta).any(1)
    varpos = np.all([cov_soa[k] > 0 for k in ops.diag_k], axis=0)
    rows = np.flatnonzero((iters >= 100) | ~stable | ~varpos)
    if not rows.size:
        return
    lam_log2 = 1.0 / prior
    ridge_nat = np.diag(lam_log2 / math.log(2.0) ** 2)
    sf = fit.size_factors
    for k in rows:
        b_log2 = beta[k] * LOG2E
        start = b_log2 if (stable[k] and np.all(np.abs(b_log2) < 30)) else beta0[k]
        alpha = float(fit.dispersions[idx[k]])
        par, _ = optim_row(y[k], mm, sf, alpha, start, lam_log2)
        mu = np.maximum(sf * np.exp2(mm @ par), fit.min_mu)
        w = 1.0 / (1.0 / mu + alpha)
        info = (mm * w[:, None]).T @ mm
        inv = np.linalg.inv(info + ridge_nat)
        sw = inv @ info @ inv
        beta[k] = par * math.log(2.0)
        cov_soa[:, k] = [sw[i, j] for i, j in ops.pairs]


def normal_shrink(
    fit: DESeq2Fit, design: pd.DataFrame, obs: pd.DataFrame, comparison: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, dict]:
    """``lfcShrink(dds, contrast = c(factor, test, ref), type = "normal")`` of R DESeq2.

    Returns ``(log2FoldChange, lfcSE, info)``; genes with all-zero counts get NaN, genes with zero counts in every
    sample of both levels LFC 0 (as ``results()``).
    """
    factor, test, ref = (str(c) for c in comparison)
    mm, names, levels_of = expanded_design(obs, design)
    if factor not in levels_of:
        raise ValueError(f"shrink='normal' needs a factor contrast; {factor!r} is not a factor of the design")
    prior = _beta_prior_var(fit, design, names, levels_of)
    ridge = (1.0 / prior) / math.log(2.0) ** 2
    ops = K.DesignOps(get_backend("cpu"), mm)
    c = np.zeros(len(names))
    c[names.index(f"{factor}[{test}]")] = 1.0
    c[names.index(f"{factor}[{ref}]")] = -1.0
    g = fit.n_genes
    lfc = np.full(g, np.nan)
    se = np.full(g, np.nan)
    nz = np.flatnonzero(~fit.all_zero)
    pairs = ops.pairs
    with np.errstate(all="ignore"), single_threaded_blas():
        for start in range(0, nz.size, _CHUNK):
            idx = nz[start : start + _CHUNK]
            y = fit.fitting_counts(idx).T
            beta0 = np.zeros((idx.size, len(names)))
            beta0[:, names.index("Intercept")] = np.log(fit.base_mean[idx])
            bf = K.fit_beta(
                ops, y, fit.size_factors, fit.dispersions[idx], beta0, ridge, tol=1e-8, maxit=100, min_mu=fit.min_mu
            )
            beta = np.array(bf.beta)
            cov_soa = np.array(bf.cov)
            _optim_failures(bf, beta, cov_soa, beta0, y, fit, idx, mm, prior, ops)
            var = np.zeros(idx.size)
            for k, (i, j) in enumerate(pairs):
                w = c[i] * c[j] * (1.0 if i == j else 2.0)
                if w:
                    var += w * cov_soa[k]
            lfc[idx] = beta @ c * LOG2E
            se[idx] = np.sqrt(np.maximum(var, 0.0)) * LOG2E
    levels = obs[factor].astype(str).to_numpy()
    involved = (levels == test) | (levels == ref)
    zero = (fit.counts[involved].sum(0) == 0) & ~fit.all_zero
    lfc[zero] = 0.0
    return lfc, se, {"beta_prior_var": dict(zip(names, (float(v) for v in prior), strict=True))}


def ashr_shrink(lfc: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Adaptive shrinkage of ``lfc`` given ``se`` (R's ``lfcShrink(type = "ashr")`` through ashr).

    Returns ``(posterior mean, posterior sd, lfsr, svalue)``; NaN where ``lfc``/``se`` are not finite.
    """
    from .._ash import ash

    lfc = np.asarray(lfc, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    ok = np.isfinite(lfc) & np.isfinite(se) & (se > 0)
    out = [np.full(lfc.shape, np.nan) for _ in range(4)]
    if ok.sum() < 2:
        raise ValueError("shrink='ashr' needs at least 2 genes with a finite LFC and standard error")
    post = ash(lfc[ok], se[ok], null_weight=10.0)
    lfsr = post.lfsr()
    out[0][ok], out[1][ok], out[2][ok], out[3][ok] = post.mean, post.sd, lfsr, svalue(lfsr)
    return out[0], out[1], out[2], out[3]


def svalue(lfsr: np.ndarray) -> np.ndarray:
    """s-values (ashr's ``qval.from.lfdr``): the running mean of the sorted local false sign rates."""
    lfsr = np.asarray(lfsr, dtype=np.float64)
    out = np.full(lfsr.shape, np.nan)
    ok = np.isfinite(lfsr)
    order = np.argsort(lfsr[ok], kind="stable")
    run = np.cumsum(lfsr[ok][order]) / np.arange(1, order.size + 1)
    vals = np.empty(order.size)
    vals[order] = run
    out[ok] = vals
    return out
