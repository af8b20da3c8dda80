"""The batched engine's kernels behind PyDESeq2's ``Inference`` interface, on arrays (samples x genes).

Each function follows R DESeq2 where PyDESeq2 and R differ: IRLS with R's convergence rule and L-BFGS-B fallback,
dispersions by R's line search on log(alpha) with the grid-search fallbacks, the dispersion trend by R's gamma GLM
iterations. :class:`gendex.tl.BatchedInference` maps PyDESeq2's method names onto them.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from . import _disp_kernels as D
from ._apeglm import apeglm_map
from ._backend import single_threaded_blas
from ._glm import _Ctx, fit_glm
from ._trend import TrendFitError, _gamma_identity_glm


def _chunks(n_genes: int, n_samples: int, chunk_size: int | None):
    size = chunk_size or max(1, int(4_000_000 // max(n_samples, 1)))
    for start in range(0, n_genes, size):
        yield slice(start, min(start + size, n_genes))


def lin_reg_mu(
    counts: np.ndarray,
    size_factors: np.ndarray,
    design_matrix: np.ndarray,
    min_mu: float,
) -> np.ndarray:
    x = np.asarray(design_matrix, dtype=np.float64)
    q, _ = np.linalg.qr(x)
    normed = np.asarray(counts, dtype=np.float64) / size_factors[:, None]
    with single_threaded_blas():
        mu = (q @ (q.T @ normed)) * size_factors[:, None]
    return np.maximum(mu, min_mu)


def irls(
    counts: np.ndarray,
    size_factors: np.ndarray,
    design_matrix: np.ndarray,
    disp: np.ndarray,
    min_mu: float,
    beta_tol: float,
    min_beta: float = -30,
    max_beta: float = 30,
    optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
    maxiter: int = 250,
    *,
    device: str = "cpu",
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    counts = np.asarray(counts, dtype=np.float64)
    x = np.asarray(design_matrix, dtype=np.float64)
    n, g = counts.shape
    ctx = _Ctx(x, size_factors, min_mu=min_mu, min_disp=1e-8, max_disp=10.0, beta_tol=beta_tol, device=device)
    beta = np.empty((g, x.shape[1]))
    mu = np.empty((n, g))
    hat = np.empty((n, g))
    conv = np.empty(g, dtype=bool)
    disp = np.asarray(disp, dtype=np.float64)
    with np.errstate(all="ignore"), single_threaded_blas():
        for sl in _chunks(g, n, chunk_size):
            res = fit_glm(ctx.t(counts[:, sl].T), ctx.t(disp[sl]), ctx, maxit=min(int(maxiter), 100))
            beta[sl] = ctx.np(res.beta)
            mu[:, sl] = ctx.np(res.mu).T
            hat[:, sl] = ctx.np(res.hat).T
            conv[sl] = ctx.np(res.conv)
    return beta, mu, hat, conv


def alpha_mle(
    counts: np.ndarray,
    design_matrix: np.ndarray,
    mu: np.ndarray,
    alpha_hat: np.ndarray,
    min_disp: float,
    max_disp: float,
    prior_disp_var: float | None = None,
    cr_reg: bool = True,  # noqa: FBT001, FBT002 (PyDESeq2 interface)
    prior_reg: bool = False,  # noqa: FBT001, FBT002 (PyDESeq2 interface)
    optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
    *,
    device: str = "cpu",
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts, dtype=np.float64)
    x = np.asarray(design_matrix, dtype=np.float64)
    n, g = counts.shape
    ctx = _Ctx(x, np.ones(n), min_mu=0.5, min_disp=min_disp, max_disp=max_disp, beta_tol=1e-8, device=device)
    if prior_reg and prior_disp_var is None:
        raise ValueError("`prior_disp_var` is needed when `prior_reg` is True")
    prior_var = float(prior_disp_var) if prior_reg and prior_disp_var is not None else 1.0
    alpha_hat = np.clip(np.asarray(alpha_hat, dtype=np.float64), min_disp, max_disp)
    out = np.empty(g)
    conv_out = np.empty(g, dtype=bool)
    be = ctx.be
    with np.errstate(all="ignore"), single_threaded_blas():
        for sl in _chunks(g, n, chunk_size):
            y = ctx.t(counts[:, sl].T)
            m = ctx.t(np.asarray(mu, dtype=np.float64)[:, sl].T)
            a0 = ctx.t(np.log(alpha_hat[sl]))
            pm = a0 if prior_reg else None
            res = D.fit_disp(
                ctx.ops,
                y,
                m,
                a0,
                prior_mean=pm,
                prior_var=prior_var,
                min_log_alpha=math.log(min_disp / 10),
                use_cr=cr_reg,
            )
            disp = be.clip(be.exp(res.log_alpha), None, ctx.max_disp)
            if prior_reg:  # R's estimateDispersionsMAP: grid where the line search hit maxit
                conv = res.iters < 100
                refit = ~conv
            else:  # R's estimateDispersionsGeneEst: no-increase rule, grid for iter == 1 or maxit
                no_inc = res.last_lp < res.initial_lp + be.abs(res.initial_lp) / 1e6
                disp = be.where(no_inc, be.exp(a0), disp)
                conv = (res.iters < 100) & (res.iters != 1)
                refit = ~conv & (disp > min_disp * 10)
            idx = be.flatnonzero(refit)
            if idx.shape[0]:
                disp[idx] = D.fit_disp_grid(
                    ctx.ops,
                    y[idx],
                    m[idx],
                    prior_mean=None if pm is None else pm[idx],
                    prior_var=prior_var,
                    max_disp=ctx.max_disp,
                    use_cr=cr_reg,
                )
            out[sl] = np.clip(ctx.np(disp), min_disp, max_disp)
            conv_out[sl] = ctx.np(conv)
    return out, conv_out


def wald_test(
    design_matrix: np.ndarray,
    disp: np.ndarray,
    lfc: np.ndarray,
    mu: np.ndarray,
    ridge_factor: np.ndarray,
    contrast: np.ndarray,
    lfc_null: np.ndarray,
    alt_hypothesis: Literal["greaterAbs", "lessAbs", "greater", "less"] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(design_matrix, dtype=np.float64)
    lfc = np.asarray(lfc, dtype=np.float64)
    c = np.asarray(contrast, dtype=np.float64)
    null = float(np.asarray(lfc_null))
    with np.errstate(all="ignore"), single_threaded_blas():
        w = (mu / (1.0 + mu * np.asarray(disp)[None, :])).T  # (G, n)
        m = np.einsum("gn,np,nq->gpq", w, x, x)
        h = np.linalg.inv(m + np.asarray(ridge_factor)[None])
        hc = h @ c
        se = np.sqrt(np.einsum("gp,gpq,gq->g", hc, m, hc))
        z = (lfc - null) / se[:, None]

        def greater():
            s = np.fmax(z, 0) @ c
            return s, stats.norm.sf(s)

        def less():
            s = np.fmin(z, 0) @ c
            return s, stats.norm.sf(np.abs(s))

        if alt_hypothesis is None:
            stat = ((lfc - null) @ c) / se
            pval = 2 * stats.norm.sf(np.abs(stat))
        elif alt_hypothesis == "greaterAbs":
            stat = (np.sign(lfc) * np.fmax((np.abs(lfc) - null) / se[:, None], 0)) @ c
            pval = 2 * stats.norm.sf(np.abs(stat))
        elif alt_hypothesis == "greater":
            stat, pval = greater()
        elif alt_hypothesis == "less":
            stat, pval = less()
        elif alt_hypothesis == "lessAbs":
            za = (lfc + abs(null)) / se[:, None]
            zb = (lfc - abs(null)) / se[:, None]
            s_above = np.fmax(za, 0) @ c
            s_below = np.fmin(zb, 0) @ c
            p_above, p_below = stats.norm.sf(s_above), stats.norm.sf(np.abs(s_below))
            stat = np.where(np.abs(s_above) <= np.abs(s_below), s_above, s_below)
            pval = np.maximum(p_above, p_below)
        else:
            raise ValueError(f"unknown `alt_hypothesis` {alt_hypothesis!r}")
    return pval, stat, se


def fit_rough_dispersions(normed_counts: np.ndarray, design_matrix: np.ndarray) -> np.ndarray:
    x = np.asarray(design_matrix, dtype=np.float64)
    y = np.asarray(normed_counts, dtype=np.float64)
    n, p = x.shape
    if n <= p:
        raise ValueError("the number of samples must exceed the number of coefficients")
    q, _ = np.linalg.qr(x)
    with single_threaded_blas():
        mu = np.maximum(q @ (q.T @ y), 1.0)
    est = (((y - mu) ** 2 - mu) / mu**2).sum(0) / (n - p)
    return np.maximum(est, 0.0)


def fit_moments_dispersions(normed_counts: np.ndarray, size_factors: np.ndarray) -> np.ndarray:
    y = np.asarray(normed_counts, dtype=np.float64)
    xim = float(np.mean(1.0 / np.asarray(size_factors, dtype=np.float64)))
    with np.errstate(all="ignore"):
        mean = y.mean(0)
        var = y.var(0, ddof=1)
        return np.nan_to_num((var - xim * mean) / mean**2)


def dispersion_trend_gamma_glm(covariates: pd.Series, targets: pd.Series) -> tuple[np.ndarray, np.ndarray, bool]:
    cov = np.asarray(covariates, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    x = np.column_stack([np.ones_like(cov), cov])
    try:
        with np.errstate(all="ignore"):
            coefs, conv = _gamma_identity_glm(y, x, np.array([0.1, 1.0]))
    except TrendFitError:
        return np.array([np.nan, np.nan]), np.full(y.shape, np.nan), False
    return coefs, x @ coefs, bool(conv and np.all(coefs > 0))


def lfc_shrink_nbinom_glm(
    design_matrix: np.ndarray,
    counts: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    prior_no_shrink_scale: float,
    prior_scale: float,
    optimizer: str,
    shrink_index: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return apeglm_map(
        np.asarray(design_matrix, dtype=np.float64),
        np.asarray(counts, dtype=np.float64),
        np.asarray(size, dtype=np.float64),
        np.asarray(offset, dtype=np.float64),
        float(prior_no_shrink_scale),
        float(prior_scale),
        int(shrink_index),
    )
