"""R DESeq2's transformations for visualisation: ``vst``, ``varianceStabilizingTransformation`` and ``rlog``.

All three start as ``DESeq()`` does (median-of-ratios size factors, gene-wise dispersions, dispersion trend), with
an intercept-only design when ``blind`` (R's default), then:

- VST: the closed-form variance-stabilising function of the parametric trend ``a0 + a1 / mean`` (or of a
  constant dispersion for ``fit_type="mean"``) applied to the normalised counts; R's ``vst`` fits the trend on
  ``nsub`` genes of mean normalised count above 5, evenly spaced in the order of their means;
- rlog: an NB GLM per gene with one coefficient per sample, shrunk towards the gene's mean by a normal prior whose
  variance matches the upper 5% quantile of the weighted observed log fold changes; the fitted log2 means.
"""

from __future__ import annotations

import math

import numpy as np

from ..._lazy import is_dask, map_blocks
from .._size_factors import size_factors_lazy, size_factors_ratio
from . import _kernels as K
from ._backend import get_backend, single_threaded_blas
from ._dispersion import _genewise, _trend_function
from ._glm import _Ctx

_CHUNK = 4096


def _check_counts(counts) -> np.ndarray:
    cnt = np.asarray(counts)
    if cnt.ndim != 2:
        raise ValueError(f"`counts` must be a 2-D samples x genes array, got shape {cnt.shape}")
    if not np.issubdtype(cnt.dtype, np.number):
        raise ValueError("`counts` must be numbers")
    if not np.issubdtype(cnt.dtype, np.integer):
        if np.any(~np.isfinite(cnt)) or np.any(cnt != np.round(cnt)):
            raise ValueError("`counts` must be finite non-negative integers")
    if np.any(cnt < 0):
        raise ValueError("`counts` must be non-negative integers")
    if cnt.shape[0] < 2:
        raise ValueError("the transformations need at least 2 samples")
    return cnt


def _size_factors(cnt: np.ndarray, size_factors) -> np.ndarray:
    if size_factors is None:
        return size_factors_ratio(cnt)
    sf = np.asarray(size_factors, dtype=np.float64)
    if sf.shape != (cnt.shape[0],) or np.any(~np.isfinite(sf)) or np.any(sf <= 0):
        raise ValueError(f"`size_factors` must be {cnt.shape[0]} positive finite numbers")
    return sf


def _inputs(counts, design, size_factors, fit_type: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked counts, the design (intercept only by default) and the size factors."""
    cnt = _check_counts(counts)
    x = np.ones((cnt.shape[0], 1)) if design is None else np.asarray(design, dtype=np.float64)
    if fit_type not in ("parametric", "local", "mean"):
        raise ValueError(f"`fit_type` must be 'parametric', 'local' or 'mean', got {fit_type!r}")
    return cnt, x, _size_factors(cnt, size_factors)


def dispersion_trend(counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, fit_type: str, base_mean=None):
    """Gene-wise dispersions and the dispersion trend (R's ``estimateDispersionsGeneEst`` + ``...Fit``).

    ``counts`` may be a dask array: the gene-wise fits then run on blocks of whole genes as dask tasks
    (``base_mean``, the mean normalised counts, must be given then). Returns ``(trend function, coefficients,
    fit type used, base means, gene-wise dispersions)``; genes whose counts are all zero carry NaN.
    """
    n = counts.shape[0]
    if n <= design.shape[1]:
        raise ValueError("the design leaves no residual degrees of freedom to estimate dispersions")
    ctx = _Ctx(design, size_factors, min_mu=0.5, min_disp=1e-8, max_disp=10.0, beta_tol=1e-8, device="cpu")
    if is_dask(counts):
        base_mean = np.asarray(base_mean, dtype=np.float64)
        nz = np.flatnonzero(base_mean > 0)
        parts = map_blocks(lambda b, sl: _block_dispersions(b, ctx, base_mean[sl] > 0), counts, axis=1, n_arrays=16)
        gene_disp = np.concatenate(parts)
    else:
        cnt = np.asarray(counts)
        base_mean = (cnt / size_factors[:, None]).mean(0)
        nz = np.flatnonzero(base_mean > 0)
        gene_disp = np.full(cnt.shape[1], np.nan)
        with np.errstate(all="ignore"), single_threaded_blas():
            for start in range(0, nz.size, _CHUNK):
                idx = nz[start : start + _CHUNK]
                gene_disp[idx] = _genewise(cnt[:, idx].T.astype(np.float64), ctx)["disp"]
    with np.errstate(all="ignore"), single_threaded_blas():
        trend, coeffs, used = _trend_function(fit_type, base_mean[nz], gene_disp[nz], ctx.min_disp)
    return trend, coeffs, used, base_mean, gene_disp


def _block_dispersions(block: np.ndarray, ctx: _Ctx, expressed: np.ndarray) -> np.ndarray:
    """Gene-wise dispersions of one block of whole genes (NaN for genes with no count)."""
    out = np.full(block.shape[1], np.nan)
    idx = np.flatnonzero(expressed)
    with np.errstate(all="ignore"), single_threaded_blas():
        for start in range(0, idx.size, _CHUNK):
            cols = idx[start : start + _CHUNK]
            out[cols] = _genewise(block[:, cols].T.astype(np.float64), ctx)["disp"]
    return out


def _vst_values(normed: np.ndarray, fit_type: str, coeffs: np.ndarray, trend, size_factors) -> np.ndarray:
    if fit_type == "parametric":
        a0, a1 = float(coeffs[0]), float(coeffs[1])
        q = normed
        return np.log((1 + a1 + 2 * a0 * q + 2 * np.sqrt(a0 * q * (1 + a1 + a0 * q))) / (4 * a0)) / math.log(2)
    if fit_type == "mean":
        alpha = float(coeffs[0])
        return (2 * np.arcsinh(np.sqrt(alpha * normed)) - math.log(alpha) - math.log(4)) / math.log(2)
    return _vst_local(normed, trend, size_factors)


def _vst_local(normed: np.ndarray, trend, size_factors: np.ndarray) -> np.ndarray:
    """R's numerical VST for a local trend: the integral of 1/sd on an asinh grid, splined, then scaled."""
    return _vst_local_function(normed.max(), normed.mean(0), trend, size_factors)(normed)


def _vst_local_function(normed_max: float, means: np.ndarray, trend, size_factors: np.ndarray):
    """The local-trend VST as a function of normalised counts (from their maximum and the genes' means)."""
    xg = np.sinh(np.linspace(0.0, np.arcsinh(normed_max), 1000))[1:]
    xim = float(np.mean(1.0 / size_factors))
    integrand = 1.0 / np.sqrt(trend(xg) * xg**2 + xim * xg)
    knots = np.arcsinh((xg[1:] + xg[:-1]) / 2)
    values = np.cumsum((xg[1:] - xg[:-1]) * (integrand[1:] + integrand[:-1]) / 2)
    spl = fmm_spline(knots, values)
    h1, h2 = np.quantile(means, 0.95), np.quantile(means, 0.999)
    eta = (math.log2(h2) - math.log2(h1)) / (spl(np.arcsinh(h2)) - spl(np.arcsinh(h1)))
    xi = math.log2(h1) - eta * spl(np.arcsinh(h1))
    return lambda normed: eta * spl(np.arcsinh(normed)) + xi


def _check_nsub(nsub: int | None, g: int) -> None:
    if nsub is None:
        return
    if not isinstance(nsub, int | np.integer) or nsub < 2:
        raise ValueError(f"`nsub` must be an integer >= 2 or None, got {nsub!r}")
    if g < nsub:
        raise ValueError(
            f"only {g} genes, fewer than nsub={nsub}: use nsub=None (R's varianceStabilizingTransformation)"
        )


def _pick_subset(base_mean: np.ndarray, nsub: int) -> np.ndarray:
    """R's ``vst`` gene subset: ``nsub`` genes of mean above 5, evenly spaced in the order of their means."""
    high = np.flatnonzero(base_mean > 5)
    if high.size < nsub:
        raise ValueError(
            f"only {high.size} genes have a mean normalised count above 5, fewer than nsub={nsub}: use "
            "nsub=None (R's varianceStabilizingTransformation)"
        )
    order = high[np.argsort(base_mean[high], kind="stable")]
    pick = np.round(np.linspace(1, order.size, nsub)).astype(np.int64) - 1
    return order[pick]


def vst(
    counts,
    *,
    design: np.ndarray | None = None,
    size_factors=None,
    fit_type: str = "parametric",
    nsub: int | None = 1000,
) -> tuple[np.ndarray, dict]:
    """R DESeq2's ``vst`` (``nsub`` genes for the trend) or, with ``nsub=None``, ``varianceStabilizingTransformation``.

    Parameters
    ----------
    counts
        Samples x genes counts.
    design
        Design matrix for the dispersions (default: intercept only, R's ``blind=TRUE``).
    size_factors
        Size factors (default: median of ratios).
    fit_type
        ``"parametric"``, ``"local"`` or ``"mean"``, as in R (a failed parametric fit falls back to local).
    nsub
        Genes (of mean normalised count > 5) the trend is fitted on; None: all genes.

    Returns
    -------
    ``(values, info)``: samples x genes log2-scale values and a dict with the trend (``fit_type``,
    ``coefficients``) and the size factors.
    """
    cnt, x, sf = _inputs(counts, design, size_factors, fit_type)
    n, g = cnt.shape
    normed = cnt / sf[:, None]
    _check_nsub(nsub, g)
    sub = np.arange(g) if nsub is None else _pick_subset(normed.mean(0), nsub)
    trend, coeffs, used, _, _ = dispersion_trend(cnt[:, sub], sf, x, fit_type)
    values = _vst_values(normed, used, np.asarray(coeffs), trend, sf)
    info = {"fit_type": used, "coefficients": [float(c) for c in np.asarray(coeffs).ravel()], "size_factors": sf}
    return values, info


def vst_lazy(
    counts,
    *,
    design: np.ndarray | None = None,
    size_factors=None,
    fit_type: str = "parametric",
    nsub: int | None = 1000,
) -> tuple:
    """:func:`vst` of checked dask counts (finite non-negative integers), in blockwise passes.

    Size factors as :func:`~gendex.stats._size_factors.size_factors_lazy`, then one pass over blocks of whole
    genes for the genes' mean and largest normalised counts; the ``nsub`` genes of the trend are then read into
    memory (samples x ``nsub``; with ``nsub=None`` the gene-wise dispersions run on blocks of whole genes
    instead) and the values are a lazy dask array with the chunks of ``counts``. Returns ``(values, info)`` as
    :func:`vst`.
    """
    n, g = counts.shape
    if n < 2:
        raise ValueError("the transformations need at least 2 samples")
    if fit_type not in ("parametric", "local", "mean"):
        raise ValueError(f"`fit_type` must be 'parametric', 'local' or 'mean', got {fit_type!r}")
    _check_nsub(nsub, g)
    x = np.ones((n, 1)) if design is None else np.asarray(design, dtype=np.float64)
    if size_factors is None:
        sf = size_factors_lazy(counts, method="ratio")
    else:
        sf = np.asarray(size_factors, dtype=np.float64)
        if sf.shape != (n,) or np.any(~np.isfinite(sf)) or np.any(sf <= 0):
            raise ValueError(f"`size_factors` must be {n} positive finite numbers")
    parts = map_blocks(lambda b, sl: _normed_means(b, sf), counts, axis=1, n_arrays=2)
    base_mean = np.concatenate([p[0] for p in parts])
    normed_max = float(max(p[1] for p in parts))
    if nsub is None:
        trend, coeffs, used, _, _ = dispersion_trend(counts, sf, x, fit_type, base_mean=base_mean)
    else:
        sub = _pick_subset(base_mean, nsub)  # in the order of the genes' means, as in memory
        ascending = np.sort(sub)
        sub_counts = np.asarray(counts[:, ascending].compute())[:, np.searchsorted(ascending, sub)]
        trend, coeffs, used, _, _ = dispersion_trend(sub_counts, sf, x, fit_type)
    normed = counts / sf[:, None]
    coeffs = np.asarray(coeffs)
    if used == "local":
        value = _vst_local_function(normed_max, base_mean, trend, sf)
        values = normed.map_blocks(value, dtype=np.float64)
    else:
        values = _vst_values(normed, used, coeffs, trend, sf)
    info = {"fit_type": used, "coefficients": [float(c) for c in coeffs.ravel()], "size_factors": sf}
    return values, info


def _normed_means(block: np.ndarray, sf: np.ndarray) -> tuple[np.ndarray, float]:
    """The mean normalised count of each gene of a block of whole genes, and the largest normalised count."""
    normed = block / sf[:, None]
    return normed.mean(0), float(normed.max(initial=0.0))


def _weighted_upper_quantile_variance(x: np.ndarray, weights: np.ndarray, upper: float = 0.05) -> float:
    """DESeq2's ``matchWeightedUpperQuantileForVariance`` (Hmisc's ``wtd.quantile``, ``normwt=TRUE``)."""
    keep = ~(np.isnan(weights) | (weights == 0))
    ax, w = np.abs(x[keep]), weights[keep]
    ok = ~np.isnan(ax + w)
    ax, w = ax[ok], w[ok]
    w = w * ax.size / w.sum()
    order = np.argsort(ax, kind="stable")
    ax, w = ax[order], w[order]
    vals, start = np.unique(ax, return_index=True)
    wsum = np.add.reduceat(w, start)
    total = wsum.sum()
    pos = 1 + (total - 1) * (1 - upper)
    low = max(math.floor(pos), 1)
    high = min(low + 1, total)
    frac = pos % 1
    cw = np.cumsum(wsum)

    def step(v: float) -> float:  # approx(cw, vals, v, method = "constant", f = 1, rule = 2)
        i = int(np.searchsorted(cw, v, side="left"))
        return float(vals[min(i, vals.size - 1)])

    q = (1 - frac) * step(low) + frac * step(high)
    from scipy.stats import norm

    return float((q / norm.ppf(1 - upper / 2)) ** 2)


def rlog(counts, *, design: np.ndarray | None = None, size_factors=None, fit_type: str = "parametric"):
    """R DESeq2's ``rlog`` (``rlogData`` with the estimated prior variance).

    Parameters as :func:`vst`. Returns ``(values, info)``: samples x genes log2 values (all-zero genes 0) and a
    dict with ``beta_prior_var``, the trend and the size factors.
    """
    cnt, x, sf = _inputs(counts, design, size_factors, fit_type)
    n, g = cnt.shape
    trend, coeffs, used, base_mean, _ = dispersion_trend(cnt, sf, x, fit_type)
    nz = np.flatnonzero(base_mean > 0)
    disp_fit = trend(base_mean[nz])
    normed = cnt[:, nz] / sf[:, None]
    lfc = (np.log2(normed + 0.5) - np.log2(base_mean[nz] + 0.5)).T  # genes x samples, R's column-major order
    weights = 1.0 / (1.0 / base_mean[nz] + disp_fit)
    prior_var = _weighted_upper_quantile_variance(lfc.T.ravel(), np.tile(weights, n))
    # design: intercept + one indicator per sample; ridge 1e-6 on the intercept, 1 / prior_var on the samples
    mm = np.column_stack([np.ones(n), np.eye(n)])
    lam_log2 = np.r_[1e-6, np.full(n, 1.0 / prior_var)]
    ridge = lam_log2 / math.log(2) ** 2
    ops = K.DesignOps(get_backend("cpu"), mm)
    out = np.zeros((n, g))
    with np.errstate(all="ignore"), single_threaded_blas():
        for start in range(0, nz.size, _CHUNK):
            idx = np.arange(start, min(start + _CHUNK, nz.size))
            y = cnt[:, nz[idx]].T.astype(np.float64)
            beta0 = np.zeros((idx.size, n + 1))
            beta0[:, 0] = np.log(base_mean[nz[idx]])
            bf = K.fit_beta(ops, y, sf, disp_fit[idx], beta0, ridge, tol=1e-4, maxit=100, min_mu=0.5)
            beta_log2 = np.asarray(bf.beta) / math.log(2)
            out[:, nz[idx]] = (beta_log2 @ mm.T).T
    info = {
        "beta_prior_var": prior_var,
        "fit_type": used,
        "coefficients": [float(c) for c in np.asarray(coeffs).ravel()],
        "size_factors": sf,
    }
    return out, info


def fmm_spline(x: np.ndarray, y: np.ndarray):
    """R's ``splinefun(x, y)`` (method ``"fmm"``: end conditions from cubics through the 4 end points)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.size
    if n < 4:
        raise ValueError("the fmm spline needs at least 4 points")
    b, c, d = np.zeros(n), np.zeros(n), np.zeros(n)
    nm1 = n - 1
    d[0] = x[1] - x[0]
    c[1] = (y[1] - y[0]) / d[0]
    for i in range(1, nm1):
        d[i] = x[i + 1] - x[i]
        b[i] = 2.0 * (d[i - 1] + d[i])
        c[i + 1] = (y[i + 1] - y[i]) / d[i]
        c[i] = c[i + 1] - c[i]
    b[0] = -d[0]
    b[nm1] = -d[n - 2]
    c[0] = c[2] / (x[3] - x[1]) - c[1] / (x[2] - x[0])
    c[nm1] = c[n - 2] / (x[nm1] - x[n - 3]) - c[n - 3] / (x[n - 2] - x[n - 4])
    c[0] = c[0] * d[0] * d[0] / (x[3] - x[0])
    c[nm1] = -c[nm1] * d[n - 2] * d[n - 2] / (x[nm1] - x[n - 4])
    for i in range(1, n):
        t = d[i - 1] / b[i - 1]
        b[i] = b[i] - t * d[i - 1]
        c[i] = c[i] - t * c[i - 1]
    c[nm1] = c[nm1] / b[nm1]
    for i in range(n - 2, -1, -1):
        c[i] = (c[i] - d[i] * c[i + 1]) / b[i]
    b[nm1] = (y[nm1] - y[n - 2]) / d[n - 2] + d[n - 2] * (c[n - 2] + 2.0 * c[nm1])
    for i in range(nm1):
        b[i] = (y[i + 1] - y[i]) / d[i] - d[i] * (c[i + 1] + 2.0 * c[i])
        d[i] = (c[i + 1] - c[i]) / d[i]
        c[i] = 3.0 * c[i]
    c[nm1] = 3.0 * c[nm1]
    d[nm1] = d[n - 2]

    def evaluate(u):
        u = np.asarray(u, dtype=np.float64)
        i = np.clip(np.searchsorted(x, u, side="right") - 1, 0, nm1)
        dx = u - x[i]
        return y[i] + dx * (b[i] + dx * (c[i] + dx * d[i]))

    return evaluate
