"""DESeq2's dispersion stages for a batch of genes: starting values, gene-wise MLE, trend, MAP."""

from __future__ import annotations

import math
import warnings

import numpy as np

from . import _disp_kernels as D
from ._glm import _Ctx, fit_glm
from ._trend import TrendFitError, local_trend, parametric_trend


def _rough_disp(normed, ctx: _Ctx):
    """R's ``roughDispEstimate`` on normalised counts."""
    be = ctx.be
    mu = be.clip((normed @ ctx.q) @ ctx.qt, 1.0, None)
    est = (((normed - mu) ** 2 - mu) / mu**2).sum(1) / (ctx.n - ctx.p)
    return be.clip(est, 0.0, None)


def _disp_start_and_mu(y, ctx: _Ctx):
    """Rough/moments starting dispersions and the (clamped) means used for the gene-wise dispersions."""
    be = ctx.be
    normed = y / ctx.sf
    bm = normed.mean(1)
    bv = ((normed - bm[:, None]) ** 2).sum(1) / (ctx.n - 1)
    xim = float(np.mean(1.0 / ctx.sf_np))
    moments = (bv - xim * bm) / bm**2
    alpha0 = be.minimum(_rough_disp(normed, ctx), moments)
    alpha0 = be.clip(alpha0, ctx.min_disp, ctx.max_disp)
    if ctx.linear_mu:
        mu = ((normed @ ctx.q) @ ctx.qt) * ctx.sf
    else:
        mu = fit_glm(y, alpha0, ctx).mu
    return alpha0, be.clip(mu, ctx.min_mu, None)


def _genewise(y, ctx: _Ctx) -> dict:
    """R's ``estimateDispersionsGeneEst`` for the (non-all-zero) genes of ``y`` (G, n)."""
    be = ctx.be
    alpha0, mu = _disp_start_and_mu(y, ctx)
    res = D.fit_disp(
        ctx.ops, y, mu, be.log(alpha0), prior_mean=None, prior_var=1.0, min_log_alpha=math.log(ctx.min_disp / 10)
    )
    disp = be.clip(be.exp(res.log_alpha), None, ctx.max_disp)
    no_increase = res.last_lp < res.initial_lp + be.abs(res.initial_lp) / 1e6
    disp = be.where(no_increase, alpha0, disp)
    conv = (res.iters < 100) & (res.iters != 1)
    idx = be.flatnonzero(~conv & (disp > ctx.min_disp * 10))
    if idx.shape[0]:
        disp[idx] = D.fit_disp_grid(ctx.ops, y[idx], mu[idx], prior_mean=None, prior_var=1.0, max_disp=ctx.max_disp)
    disp = be.clip(disp, ctx.min_disp, ctx.max_disp)
    return {"disp": disp, "iters": res.iters, "mu": mu}


def _map(y, mu, gene, fitted, ctx: _Ctx, prior_var: float, var_log: float) -> dict:
    """R's ``estimateDispersionsMAP`` (line search with prior, grid fallback, outliers keep gene-wise)."""
    be = ctx.be
    init = be.where(gene > 0.1 * fitted, gene, fitted)
    init = be.where(be.isnan(init), fitted, init)
    prior_mean = be.log(fitted)
    res = D.fit_disp(
        ctx.ops,
        y,
        mu,
        be.log(init),
        prior_mean=prior_mean,
        prior_var=prior_var,
        min_log_alpha=math.log(ctx.min_disp / 10),
    )
    disp_map = be.exp(res.log_alpha)
    idx = be.flatnonzero(res.iters >= 100)
    if idx.shape[0]:
        disp_map[idx] = D.fit_disp_grid(
            ctx.ops, y[idx], mu[idx], prior_mean=prior_mean[idx], prior_var=prior_var, max_disp=ctx.max_disp
        )
    disp_map = be.clip(disp_map, ctx.min_disp, ctx.max_disp)
    outlier = be.log(gene) > be.log(fitted) + 2.0 * math.sqrt(var_log) if np.isfinite(var_log) else gene < 0
    final = be.where(outlier, gene, disp_map)
    return {"map": disp_map, "final": final, "outlier": outlier, "iters": res.iters}


def _trend_function(fit_type, base_mean, gene_disp, min_disp):
    use = gene_disp > 100 * min_disp
    if not use.any():
        raise ValueError(
            "all gene-wise dispersion estimates are within 2 orders of magnitude of the minimum value, "
            "so the dispersion trend cannot be fitted"
        )
    coeffs = np.array([np.nan, np.nan])
    if fit_type == "parametric":
        try:
            coeffs = parametric_trend(base_mean[use], gene_disp[use])
            return (lambda q: coeffs[0] + coeffs[1] / q), coeffs, "parametric"
        except TrendFitError as err:
            warnings.warn(
                f"the parametric dispersion trend failed ({err}); a local regression was substituted, as R does",
                stacklevel=3,
            )
            fit_type = "local"
    if fit_type == "local":
        return local_trend(base_mean[use], gene_disp[use], min_disp), coeffs, "local"
    if fit_type == "mean":
        use_mean = gene_disp > 10 * min_disp
        vals = np.sort(gene_disp[use_mean])
        lo = int(math.floor(vals.size * 0.001))
        mean_disp = float(vals[lo : vals.size - lo].mean())
        return (lambda q: np.full(np.shape(q), mean_disp)), np.array([mean_disp, np.nan]), "mean"
    raise ValueError(f"`fit_type` must be 'parametric', 'local' or 'mean', got {fit_type!r}")
