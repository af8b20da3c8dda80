"""limma-voom as vectorised numpy/scipy kernels: TMM, voom, weighted lmFit, contrasts, eBayes, topTable.

An independent BSD-licensed implementation of the published algorithms: TMM normalisation
(Robinson & Oshlack 2010, as in edgeR's ``calcNormFactors``), voom (Law et al. 2014), linear models with
empirical Bayes moderation (Smyth 2004) and R's ``lowess`` (Cleveland 1979, 1981). Every kernel takes
plain arrays; count and expression matrices are **samples x genes**, as in AnnData. Per-gene results are
arrays over genes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from ._multitest import bh_adjust

# --------------------------------------------------------------------------------------------------------------------
# TMM normalisation
# --------------------------------------------------------------------------------------------------------------------


def _tmm_factor(
    obs: NDArray,
    ref: NDArray,
    lib_obs: float,
    lib_ref: float,
    *,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
    a_cutoff: float,
) -> float:
    """TMM factor of one sample against the reference sample (edgeR's ``.calcFactorTMM``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p_obs = obs / lib_obs
        p_ref = ref / lib_ref
        log_r = np.log2(p_obs / p_ref)
        abs_e = (np.log2(p_obs) + np.log2(p_ref)) / 2.0
        var = (lib_obs - obs) / lib_obs / obs + (lib_ref - ref) / lib_ref / ref
    fin = np.isfinite(log_r) & np.isfinite(abs_e) & (abs_e > a_cutoff)
    log_r, abs_e, var = log_r[fin], abs_e[fin], var[fin]
    if log_r.size == 0:
        return 1.0
    if np.max(np.abs(log_r)) < 1e-6:
        return 1.0
    n = log_r.size
    lo_l = np.floor(n * logratio_trim) + 1
    hi_l = n + 1 - lo_l
    lo_s = np.floor(n * sum_trim) + 1
    hi_s = n + 1 - lo_s
    rank_r = stats.rankdata(log_r)
    rank_e = stats.rankdata(abs_e)
    keep = (rank_r >= lo_l) & (rank_r <= hi_l) & (rank_e >= lo_s) & (rank_e <= hi_s)
    if not keep.any():
        return 1.0
    if do_weighting:
        f = np.sum(log_r[keep] / var[keep]) / np.sum(1.0 / var[keep])
    else:
        f = np.mean(log_r[keep])
    return float(2.0**f) if np.isfinite(f) else 1.0


def calc_norm_factors_tmm(
    counts: ArrayLike,
    *,
    lib_size: ArrayLike | None = None,
    ref_sample: int | None = None,
    logratio_trim: float = 0.3,
    sum_trim: float = 0.05,
    do_weighting: bool = True,
    a_cutoff: float = -1e10,
) -> NDArray[np.float64]:
    """TMM normalisation factors (edgeR's ``calcNormFactors(method="TMM")``).

    Each sample is compared with a reference sample: the log-ratios ``M`` of the two libraries' proportions
    are trimmed by ``logratio_trim`` at both ends, the average log-expressions ``A`` by ``sum_trim``, and the
    remaining ``M`` are averaged with inverse-variance (delta-method) weights. The factors are rescaled to a
    geometric mean of 1.

    Parameters
    ----------
    counts
        Samples x genes non-negative counts.
    lib_size
        Library sizes; by default the sample totals.
    ref_sample
        Index of the reference sample; by default the sample whose upper-quartile proportion is closest to
        the mean upper-quartile proportion (edgeR's rule).
    logratio_trim
        Fraction of log-ratios trimmed at each end.
    sum_trim
        Fraction of average log-expressions trimmed at each end.
    do_weighting
        Use the asymptotic binomial precision weights.
    a_cutoff
        Genes with average log-expression at or below this are ignored.

    Returns
    -------
    One normalisation factor per sample; the effective library size is ``lib_size * factor``.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import calc_norm_factors_tmm
    >>> counts = np.random.default_rng(0).poisson(50, size=(4, 300))
    >>> f = calc_norm_factors_tmm(counts)
    >>> bool(np.isclose(np.exp(np.log(f).mean()), 1.0))
    True
    """
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"`counts` must be a 2-d samples x genes array, got shape {x.shape}")
    n_samples = x.shape[0]
    lib = x.sum(axis=1) if lib_size is None else np.asarray(lib_size, dtype=np.float64)
    if lib.shape != (n_samples,):
        raise ValueError(f"`lib_size` must have one value per sample ({n_samples}), got shape {lib.shape}")
    if np.any(~np.isfinite(lib)) or np.any(lib <= 0):
        raise ValueError("library sizes must be positive and finite (is a sample empty?)")
    x = x[:, (x > 0).any(axis=0)]
    if x.shape[1] == 0 or n_samples == 1:
        return np.ones(n_samples)
    if ref_sample is None:
        upper_q = np.quantile(x, 0.75, axis=1) / lib
        if np.median(upper_q) < 1e-20:
            ref_sample = int(np.argmax(np.sqrt(x).sum(axis=1)))
        else:
            ref_sample = int(np.argmin(np.abs(upper_q - upper_q.mean())))
    elif not 0 <= ref_sample < n_samples:
        raise ValueError(f"`ref_sample` must be a sample index in [0, {n_samples}), got {ref_sample}")
    factors = np.array(
        [
            _tmm_factor(
                x[i],
                x[ref_sample],
                lib[i],
                lib[ref_sample],
                logratio_trim=logratio_trim,
                sum_trim=sum_trim,
                do_weighting=do_weighting,
                a_cutoff=a_cutoff,
            )
            for i in range(n_samples)
        ]
    )
    return factors / np.exp(np.mean(np.log(factors)))


# --------------------------------------------------------------------------------------------------------------------
# R's lowess
# --------------------------------------------------------------------------------------------------------------------


def _local_fit(
    x: NDArray, y: NDArray, xs: float, nleft: int, nright: int, robustness: NDArray | None, x_range: float
) -> float | None:
    """Fitted value at ``xs`` of the tricube-weighted local line over the window (``None``: all weights 0)."""
    n = x.size
    h = max(xs - x[nleft], x[nright] - xs)
    h9 = 0.999 * h
    h1 = 0.001 * h
    # the window runs from nleft to the first point right of xs farther than h9 (ties beyond nright included)
    end = min(n, int(np.searchsorted(x, xs + h, side="right")) + 2)
    while True:
        xw = x[nleft:end]
        r = np.abs(xw - xs)
        stop = (r > h9) & (xw > xs)
        if stop.any() or end == n:
            break
        end = n
    if stop.any():
        m = int(np.argmax(stop))
        xw, r = xw[:m], r[:m]
    w = np.where(r <= h1, 1.0, (1.0 - (r / h) ** 3) ** 3) if h > 0 else np.ones_like(r)
    w = np.where(r <= h9, w, 0.0)
    if robustness is not None:
        w = w * robustness[nleft : nleft + xw.size]
    a = w.sum()
    if a <= 0.0:
        return None
    w = w / a
    if h > 0.0:
        centre = np.sum(w * xw)
        b = xs - centre
        c = np.sum(w * (xw - centre) ** 2)
        if np.sqrt(c) > 0.001 * x_range:
            w = w * (b / c * (xw - centre) + 1.0)
    return float(np.sum(w * y[nleft : nleft + xw.size]))


def _lowess_sorted(x: NDArray, y: NDArray, f: float, n_iter: int, delta: float) -> NDArray[np.float64]:
    """R's ``clowess`` on x sorted ascending: locally linear robust smoothing with ``delta`` skipping."""
    n = x.size
    if n < 2:
        return y.astype(np.float64, copy=True)
    ns = max(2, min(n, int(f * n + 1e-7)))
    x_range = x[-1] - x[0]
    fitted = np.empty(n)
    robustness = None
    for iteration in range(n_iter + 1):
        nleft, nright = 0, ns - 1
        last = -1
        i = 0
        while True:
            if nright < n - 1:
                # slide the window right while that makes its radius around x[i] smaller
                cand = np.arange(nleft, n - ns)
                move = (x[i] - x[cand]) > (x[cand + ns] - x[i])
                shift = int(np.argmin(move)) if not move.all() else cand.size
                nleft += shift
                nright += shift
            value = _local_fit(x, y, x[i], nleft, nright, robustness, x_range)
            fitted[i] = y[i] if value is None else value
            if last < i - 1:
                alpha = (x[last + 1 : i] - x[last]) / (x[i] - x[last])
                fitted[last + 1 : i] = alpha * fitted[i] + (1.0 - alpha) * fitted[last]
            last = i
            cut = x[last] + delta
            first_beyond = int(np.searchsorted(x, cut, side="right"))
            ties_end = int(np.searchsorted(x, x[last], side="right"))
            if ties_end - 1 > last:
                fitted[last + 1 : ties_end] = fitted[last]
                last = ties_end - 1
            i = max(last + 1, first_beyond - 1)
            if last >= n - 1:
                break
        residuals = y - fitted
        if iteration == n_iter:
            break
        scale = np.mean(np.abs(residuals))
        abs_res = np.abs(residuals)
        half = n // 2
        part = np.partition(abs_res, [half - 1, half] if n % 2 == 0 else [half])
        cmad = 3.0 * (part[half] + part[half - 1]) if n % 2 == 0 else 6.0 * part[half]
        if cmad < 1e-7 * scale:
            break
        robustness = np.where(
            abs_res <= 0.001 * cmad, 1.0, np.where(abs_res <= 0.999 * cmad, (1.0 - (abs_res / cmad) ** 2) ** 2, 0.0)
        )
    return fitted


def lowess(
    x: ArrayLike, y: ArrayLike, *, f: float = 2 / 3, n_iter: int = 3, delta: float | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """R's ``lowess(x, y, f, iter, delta)``: robust locally weighted linear smoothing.

    Parameters
    ----------
    x, y
        Coordinates (finite).
    f
        Span: the fraction of points in each local fit.
    n_iter
        Number of robustifying iterations (R's ``iter``).
    delta
        Points closer than ``delta`` to the last fitted point are interpolated instead of fitted; by default
        ``0.01 * (max(x) - min(x))`` as in R.

    Returns
    -------
    ``(x_sorted, fitted)``: x in ascending order (ties in input order) and the smoothed values there.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import lowess
    >>> xs, ys = lowess(np.arange(10.0), np.arange(10.0) ** 2, f=0.5)
    >>> xs.shape == ys.shape == (10,)
    True
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"`x` and `y` differ in length ({x.size} vs {y.size})")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("lowess needs finite `x` and `y`")
    if x.size == 0:
        raise ValueError("lowess needs at least one point")
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    if delta is None:
        delta = 0.01 * (xs[-1] - xs[0])
    return xs, _lowess_sorted(xs, ys, f, n_iter, float(delta))


def _approx_rule2(x_line: NDArray, y_line: NDArray, xout: NDArray) -> NDArray:
    """R's ``approxfun(x, y, rule=2, ties=mean)`` for sorted ``x_line`` evaluated at ``xout``."""
    ux, start = np.unique(x_line, return_index=True)
    if ux.size < x_line.size:
        sums = np.add.reduceat(y_line, start)
        uy = sums / np.diff(np.append(start, x_line.size))
    else:
        uy = y_line
    return np.interp(xout, ux, uy)


# --------------------------------------------------------------------------------------------------------------------
# Linear models
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearFit:
    """Per-gene linear-model fit (limma's ``MArrayLM``), genes along the first axis.

    Attributes
    ----------
    coefficients
        Genes x coefficients estimates.
    stdev_unscaled
        Genes x coefficients unscaled standard errors (``sqrt(diag((X'WX)^-1))``).
    cov_unscaled
        Genes x coefficients x coefficients unscaled covariance ``(X'WX)^-1``.
    sigma
        Residual standard deviation per gene.
    df_residual
        Residual degrees of freedom per gene.
    amean
        Average (unweighted) expression per gene (limma's ``Amean``).
    coef_names
        Names of the coefficients (or contrasts).
    """

    coefficients: NDArray[np.float64]
    stdev_unscaled: NDArray[np.float64]
    cov_unscaled: NDArray[np.float64]
    sigma: NDArray[np.float64]
    df_residual: NDArray[np.float64]
    amean: NDArray[np.float64]
    coef_names: tuple[str, ...]


def _check_design(design: ArrayLike, n_samples: int) -> NDArray[np.float64]:
    x = np.asarray(design, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != n_samples:
        raise ValueError(f"the design must be a samples x coefficients matrix with {n_samples} rows, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("the design matrix has non-finite entries")
    rank = np.linalg.matrix_rank(x)
    if rank < x.shape[1]:
        raise ValueError(f"the design matrix is rank deficient (rank {rank} < {x.shape[1]} columns)")
    if n_samples <= x.shape[1]:
        raise ValueError(f"the design has {x.shape[1]} coefficients for {n_samples} samples: no residual df")
    return x


def lm_fit(
    expr: ArrayLike,
    design: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    coef_names: Sequence[str] | None = None,
) -> LinearFit:
    """Gene-wise (weighted) least squares of ``expr`` on ``design`` (limma's ``lmFit``), vectorised over genes.

    Parameters
    ----------
    expr
        Samples x genes finite expression values (e.g. log-CPM).
    design
        Samples x coefficients design matrix of full column rank.
    weights
        Samples x genes positive precision weights (e.g. from :func:`voom`); None fits ordinary least squares.
    coef_names
        Names of the design columns.

    Returns
    -------
    A :class:`LinearFit` with coefficients, unscaled standard errors and covariances, residual sd and df,
    and the average expression.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import lm_fit
    >>> design = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    >>> fit = lm_fit(np.random.default_rng(0).normal(size=(6, 5)), design)
    >>> fit.coefficients.shape
    (5, 2)
    """
    y = np.asarray(expr, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"`expr` must be a 2-d samples x genes array, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("`expr` has non-finite values (NaN/inf); lm_fit needs complete data")
    n, n_genes = y.shape
    x = _check_design(design, n)
    p = x.shape[1]
    names = tuple(str(c) for c in coef_names) if coef_names is not None else tuple(f"x{j}" for j in range(p))
    if len(names) != p:
        raise ValueError(f"{len(names)} coefficient names for {p} design columns")
    df = np.full(n_genes, float(n - p))
    if weights is None:
        q, r = np.linalg.qr(x)
        r_inv = np.linalg.inv(r)
        coef = (r_inv @ (q.T @ y)).T
        cov1 = r_inv @ r_inv.T
        resid = y - x @ coef.T
        sigma = np.sqrt(np.einsum("ig,ig->g", resid, resid) / df)
        cov = np.broadcast_to(cov1, (n_genes, p, p)).copy()
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != y.shape:
            raise ValueError(f"`weights` must have the shape of `expr` {y.shape}, got {w.shape}")
        if not (np.isfinite(w).all() and (w > 0).all()):
            raise ValueError("`weights` must be positive and finite")
        xtwx = np.einsum("ig,ia,ib->gab", w, x, x, optimize=True)
        xtwy = np.einsum("ig,ia,ig->ga", w, x, y, optimize=True)
        cov = np.linalg.inv(xtwx)
        coef = np.einsum("gab,gb->ga", cov, xtwy)
        resid = y - x @ coef.T
        sigma = np.sqrt(np.einsum("ig,ig,ig->g", w, resid, resid) / df)
    stdev = np.sqrt(np.einsum("gaa->ga", cov))
    return LinearFit(
        coefficients=coef,
        stdev_unscaled=stdev,
        cov_unscaled=cov,
        sigma=sigma,
        df_residual=df,
        amean=y.mean(axis=0),
        coef_names=names,
    )


def contrasts_fit(fit: LinearFit, contrasts: ArrayLike, *, names: Sequence[str] | None = None) -> LinearFit:
    """Re-express a fit in terms of contrasts of its coefficients (limma's ``contrasts.fit``).

    Parameters
    ----------
    fit
        Result of :func:`lm_fit`.
    contrasts
        Coefficients x contrasts matrix, or one contrast vector over the coefficients.
    names
        Names of the contrasts.

    Returns
    -------
    A :class:`LinearFit` whose coefficients are the contrasts.

    Notes
    -----
    The standard errors use each gene's own covariance matrix, so they are exact for weighted fits of any
    design; limma approximates them from one covariance matrix when the design is not orthogonal, which
    gives the same values for orthogonal designs and for contrasts that select a single coefficient.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import contrasts_fit, lm_fit
    >>> design = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    >>> fit = lm_fit(np.random.default_rng(0).normal(size=(6, 5)), design)
    >>> contrasts_fit(fit, [0, 1]).coefficients.shape
    (5, 1)
    """
    c = np.asarray(contrasts, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    p = fit.coefficients.shape[1]
    if c.ndim != 2 or c.shape[0] != p:
        raise ValueError(f"`contrasts` must have {p} rows (one per coefficient), got shape {c.shape}")
    if not np.isfinite(c).all() or not np.any(c != 0, axis=0).all():
        raise ValueError("each contrast must be finite and not all zero")
    k = c.shape[1]
    out_names = tuple(str(n) for n in names) if names is not None else tuple(f"contrast{j}" for j in range(k))
    if len(out_names) != k:
        raise ValueError(f"{len(out_names)} names for {k} contrasts")
    cov = np.einsum("ak,gab,bl->gkl", c, fit.cov_unscaled, c, optimize=True)
    return replace(
        fit,
        coefficients=fit.coefficients @ c,
        stdev_unscaled=np.sqrt(np.einsum("gkk->gk", cov)),
        cov_unscaled=cov,
        coef_names=out_names,
    )


# --------------------------------------------------------------------------------------------------------------------
# Empirical Bayes
# --------------------------------------------------------------------------------------------------------------------


def trigamma_inverse(x: ArrayLike) -> NDArray[np.float64]:
    """Solve ``trigamma(y) = x`` for ``y`` by Newton's method (limma's ``trigammaInverse``).

    Parameters
    ----------
    x
        Positive values.

    Returns
    -------
    ``y`` with ``trigamma(y) == x`` (NaN where ``x`` is negative or NaN).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.special import polygamma
    >>> from gendex.stats import trigamma_inverse
    >>> bool(np.isclose(polygamma(1, trigamma_inverse(0.5)), 0.5))
    True
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.full(x.shape, np.nan)
    big = x > 1e7
    small = (x < 1e-6) & (x >= 0)
    y[big] = 1.0 / np.sqrt(x[big])
    y[small] = 1.0 / x[small]
    todo = np.isfinite(x) & (x >= 1e-6) & ~big
    if todo.any():
        xt = x[todo]
        # 1/trigamma(y) is convex and nearly linear, so Newton's method converges monotonically from here
        yt = 0.5 + 1.0 / xt
        for _ in range(50):
            tri = special.polygamma(1, yt)
            step = tri * (1.0 - tri / xt) / special.polygamma(2, yt)
            yt = yt + step
            if np.max(-step / yt) < 1e-8:
                break
        y[todo] = yt
    return y


def fit_f_dist(x: ArrayLike, df1: ArrayLike) -> tuple[float, float]:
    """Moment estimates of the scale and df2 of a scaled F distribution (limma's ``fitFDist``).

    The values ``x`` (sample variances on ``df1`` degrees of freedom) are modelled as ``scale * F(df1, df2)``;
    the estimates match the mean and variance of ``log(x)`` using the digamma and trigamma functions.

    Parameters
    ----------
    x
        Sample variances.
    df1
        Their degrees of freedom (scalar or one per value).

    Returns
    -------
    ``(scale, df2)``; ``df2`` is ``inf`` when the variances are no more dispersed than the chi-square
    sampling alone explains.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import fit_f_dist
    >>> s2 = np.random.default_rng(0).chisquare(5, size=2000) / 5
    >>> scale, df2 = fit_f_dist(s2, 5)
    >>> bool(0.9 < scale < 1.1)
    True
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    d1 = np.broadcast_to(np.asarray(df1, dtype=np.float64), x.shape).astype(np.float64)
    ok = np.isfinite(x) & np.isfinite(d1) & (x > -1e-15) & (d1 > 1e-15)
    x, d1 = x[ok], d1[ok]
    n = x.size
    if n <= 1:
        raise ValueError(f"fit_f_dist needs at least two finite variances, got {n}")
    x = np.maximum(x, 0.0)
    m = np.median(x)
    if m == 0:
        m = 1.0
    x = np.maximum(x, 1e-5 * m)
    e = np.log(x) - special.digamma(d1 / 2) + np.log(d1 / 2)
    e_mean = e.mean()
    e_var = np.sum((e - e_mean) ** 2) / (n - 1) - np.mean(special.polygamma(1, d1 / 2))
    if e_var > 0:
        df2 = 2.0 * float(trigamma_inverse(e_var)[0])
        scale = float(np.exp(e_mean + special.digamma(df2 / 2) - np.log(df2 / 2)))
    else:
        df2 = np.inf
        scale = float(np.mean(x))
    return scale, df2


def squeeze_var(var: ArrayLike, df: ArrayLike) -> tuple[NDArray[np.float64], float, float]:
    """Empirical Bayes posterior variances (limma's ``squeezeVar``, non-robust, no covariate).

    Parameters
    ----------
    var
        Gene-wise residual variances.
    df
        Their residual degrees of freedom.

    Returns
    -------
    ``(var_post, var_prior, df_prior)``: ``var_post = (df * var + df_prior * var_prior) / (df + df_prior)``.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import squeeze_var
    >>> s2 = np.random.default_rng(0).chisquare(4, size=500) / 4
    >>> post, prior, df0 = squeeze_var(s2, 4)
    >>> post.shape
    (500,)
    """
    v = np.asarray(var, dtype=np.float64).ravel()
    d = np.broadcast_to(np.asarray(df, dtype=np.float64), v.shape)
    if v.size == 1:
        return v.copy(), float(v[0]), 0.0
    var_prior, df_prior = fit_f_dist(v, d)
    if np.isinf(df_prior):
        return np.full(v.shape, var_prior), var_prior, df_prior
    return (d * v + df_prior * var_prior) / (d + df_prior), var_prior, df_prior


def _upper_t_quantile_from_log(log_p: NDArray, df: float) -> NDArray:
    """Upper-tail t quantile for log upper-tail probabilities ``log_p``."""
    return -special.stdtrit(df, np.exp(np.maximum(log_p, -745.0)))


def tmixture(
    tstat: ArrayLike, stdev_unscaled: ArrayLike, df: ArrayLike, proportion: float, v0_lim: tuple[float, float] | None
) -> float:
    """Prior variance of the true log-fold-changes of DE genes from the top t-statistics (limma's ``tmixture.vector``).

    Parameters
    ----------
    tstat, stdev_unscaled, df
        Moderated t-statistics, unscaled standard errors and total df, one per gene.
    proportion
        Assumed proportion of DE genes.
    v0_lim
        Limits for the per-gene estimates before averaging.

    Returns
    -------
    The estimated prior variance ``v0`` (NaN when too few genes).
    """
    t = np.asarray(tstat, dtype=np.float64).ravel()
    su = np.asarray(stdev_unscaled, dtype=np.float64).ravel()
    d = np.broadcast_to(np.asarray(df, dtype=np.float64), t.shape).astype(np.float64)
    ok = ~np.isnan(t)
    t, su, d = np.abs(t[ok]), su[ok], d[ok]
    n_genes = t.size
    n_target = int(np.ceil(proportion / 2 * n_genes))
    if n_target < 1:
        return float("nan")
    p = max(n_target / n_genes, proportion)
    max_df = float(np.max(d))
    lower = d < max_df
    if lower.any():
        log_tail = stats.t.logsf(t[lower], d[lower])
        t[lower] = _upper_t_quantile_from_log(log_tail, max_df)
    top = np.argsort(-t, kind="stable")[:n_target]
    t_top = t[top]
    v1 = su[top] ** 2
    r = np.arange(1, n_target + 1)
    p0 = 2.0 * stats.t.sf(t_top, max_df)
    p_target = ((r - 0.5) / n_genes - (1 - p) * p0) / p
    v0 = np.zeros(n_target)
    pos = p_target > p0
    if pos.any():
        q_target = stats.t.isf(p_target[pos] / 2, max_df)
        v0[pos] = v1[pos] * ((t_top[pos] / q_target) ** 2 - 1.0)
    if v0_lim is not None:
        v0 = np.clip(v0, v0_lim[0], v0_lim[1])
    return float(np.mean(v0))


@dataclass(frozen=True)
class EBayesResult:
    """Moderated statistics (limma's ``eBayes``), genes x contrasts where per contrast.

    Attributes
    ----------
    t
        Moderated t-statistics.
    p_value
        Two-sided p-values on ``df_total`` degrees of freedom.
    lods
        B statistics: log-odds of differential expression.
    s2_post
        Posterior residual variances per gene.
    s2_prior
        Prior variance.
    df_prior
        Prior degrees of freedom.
    df_total
        Total degrees of freedom per gene.
    var_prior
        Prior variance of the true coefficients of DE genes, per contrast.
    """

    t: NDArray[np.float64]
    p_value: NDArray[np.float64]
    lods: NDArray[np.float64]
    s2_post: NDArray[np.float64]
    s2_prior: float
    df_prior: float
    df_total: NDArray[np.float64]
    var_prior: NDArray[np.float64]


def ebayes(
    fit: LinearFit, *, proportion: float = 0.01, stdev_coef_lim: tuple[float, float] = (0.1, 4.0)
) -> EBayesResult:
    """Empirical Bayes moderated t-statistics, p-values and B statistics (limma's ``eBayes``).

    Parameters
    ----------
    fit
        Result of :func:`lm_fit` or :func:`contrasts_fit`.
    proportion
        Assumed proportion of differentially expressed genes (for the B statistic).
    stdev_coef_lim
        Limits on the prior standard deviation of the true log-fold-changes (for the B statistic).

    Returns
    -------
    An :class:`EBayesResult`.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import ebayes, lm_fit
    >>> design = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    >>> eb = ebayes(lm_fit(np.random.default_rng(0).normal(size=(6, 300)), design))
    >>> eb.t.shape
    (300, 2)
    """
    if not 0 < proportion < 1:
        raise ValueError(f"`proportion` must lie in (0, 1), got {proportion}")
    s2_post, s2_prior, df_prior = squeeze_var(fit.sigma**2, fit.df_residual)
    df_total = np.minimum(fit.df_residual + df_prior, np.sum(fit.df_residual))
    su = fit.stdev_unscaled
    t = fit.coefficients / su / np.sqrt(s2_post)[:, None]
    p_value = 2.0 * special.stdtr(df_total[:, None], -np.abs(t))
    var_prior_lim = (stdev_coef_lim[0] ** 2 / s2_prior, stdev_coef_lim[1] ** 2 / s2_prior)
    var_prior = np.array([tmixture(t[:, j], su[:, j], df_total, proportion, var_prior_lim) for j in range(t.shape[1])])
    var_prior = np.where(np.isnan(var_prior), 1.0 / s2_prior, var_prior)
    r = (su**2 + var_prior[None, :]) / su**2
    t2 = t**2
    dft = df_total[:, None]
    if np.isinf(df_prior) or df_prior > 1e6:
        kernel = t2 * (1.0 - 1.0 / r) / 2.0
    else:
        kernel = (1.0 + dft) / 2.0 * np.log((t2 + dft) / (t2 / r + dft))
    lods = np.log(proportion / (1.0 - proportion)) - np.log(r) / 2.0 + kernel
    return EBayesResult(
        t=t,
        p_value=p_value,
        lods=lods,
        s2_post=s2_post,
        s2_prior=float(s2_prior),
        df_prior=float(df_prior),
        df_total=df_total,
        var_prior=var_prior,
    )


def top_table(
    fit: LinearFit, eb: EBayesResult, *, coef: int = 0, genes: Sequence[str] | None = None, sort: bool = False
) -> pd.DataFrame:
    """One contrast's results table (limma's ``topTable(n=Inf)``) with BH-adjusted p-values.

    Parameters
    ----------
    fit
        The fit passed to :func:`ebayes`.
    eb
        Its :func:`ebayes` result.
    coef
        Index of the coefficient or contrast.
    genes
        Gene names for the index.
    sort
        Sort by decreasing B statistic, as ``topTable`` does by default; otherwise keep gene order.

    Returns
    -------
    DataFrame with ``logFC, AveExpr, t, P.Value, adj.P.Val, B`` and the standard error ``SE``
    (``sqrt(s2_post) * stdev_unscaled``).
    """
    if not 0 <= coef < fit.coefficients.shape[1]:
        raise ValueError(f"`coef` must index one of the {fit.coefficients.shape[1]} coefficients, got {coef}")
    p = eb.p_value[:, coef]
    table = pd.DataFrame(
        {
            "logFC": fit.coefficients[:, coef],
            "AveExpr": fit.amean,
            "t": eb.t[:, coef],
            "P.Value": p,
            "adj.P.Val": bh_adjust(p),
            "B": eb.lods[:, coef],
            "SE": fit.stdev_unscaled[:, coef] * np.sqrt(eb.s2_post),
        },
        index=None if genes is None else pd.Index([str(g) for g in genes]),
    )
    if sort:
        table = table.iloc[np.argsort(-table["B"].to_numpy(), kind="stable")]
    return table


# --------------------------------------------------------------------------------------------------------------------
# voom
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoomResult:
    """voom output: log-CPM, precision weights and the mean-variance trend.

    Attributes
    ----------
    log_cpm
        Samples x genes ``log2((count + 0.5) / (lib_size + 1) * 1e6)``.
    weights
        Samples x genes precision weights.
    lib_size
        Effective library sizes used.
    sx
        Per gene: average log2 count (``AveExpr + mean(log2(lib_size + 1)) - log2(1e6)``); NaN for genes
        with zero counts everywhere (left out of the trend, as in limma).
    sy
        Per gene: square root of the residual standard deviation (NaN where ``sx`` is).
    trend_x, trend_y
        The lowess trend: sorted ``sx`` and the fitted ``sqrt(sd)`` there.
    """

    log_cpm: NDArray[np.float64]
    weights: NDArray[np.float64]
    lib_size: NDArray[np.float64]
    sx: NDArray[np.float64]
    sy: NDArray[np.float64]
    trend_x: NDArray[np.float64]
    trend_y: NDArray[np.float64]


def voom(counts: ArrayLike, design: ArrayLike, *, lib_size: ArrayLike | None = None, span: float = 0.5) -> VoomResult:
    """voom: log-CPM values with precision weights from the lowess mean-variance trend (Law et al. 2014).

    An unweighted linear model gives each gene's residual sd; ``sqrt(sd)`` is smoothed against the mean
    log2 count with R's ``lowess(f=span)``; each observation's weight is ``trend(fitted log2 count)^-4``
    (linear interpolation, constant beyond the ends).

    Parameters
    ----------
    counts
        Samples x genes non-negative counts.
    design
        Samples x coefficients design matrix.
    lib_size
        Effective library sizes (e.g. ``totals * TMM factors``); by default the sample totals.
    span
        Lowess span.

    Returns
    -------
    A :class:`VoomResult`.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import voom
    >>> counts = np.random.default_rng(0).poisson(50, size=(6, 300))
    >>> v = voom(counts, np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]]))
    >>> v.weights.shape
    (6, 300)
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"`counts` must be a 2-d samples x genes array, got shape {c.shape}")
    if c.shape[1] < 2:
        raise ValueError("voom needs at least two genes to fit a mean-variance trend")
    if not np.isfinite(c).all() or (c < 0).any():
        raise ValueError("`counts` must be finite and non-negative")
    lib = c.sum(axis=1) if lib_size is None else np.asarray(lib_size, dtype=np.float64)
    if lib.shape != (c.shape[0],) or not (np.isfinite(lib).all() and (lib > 0).all()):
        raise ValueError("library sizes must be positive and finite, one per sample")
    x = _check_design(design, c.shape[0])
    log_lib = np.log2(lib + 1.0)
    y = np.log2(c + 0.5) - log_lib[:, None] + np.log2(1e6)
    fit = lm_fit(y, x)
    sx = fit.amean + log_lib.mean() - np.log2(1e6)
    sy = np.sqrt(fit.sigma)
    used = c.sum(axis=0) > 0
    if used.sum() < 2:
        raise ValueError("voom needs at least two genes with non-zero counts")
    trend_x, trend_y = lowess(sx[used], sy[used], f=span)
    fitted_log_count = x @ fit.coefficients.T + log_lib[:, None] - np.log2(1e6)
    weights = 1.0 / _approx_rule2(trend_x, trend_y, fitted_log_count) ** 4
    return VoomResult(
        log_cpm=y,
        weights=weights,
        lib_size=lib,
        sx=np.where(used, sx, np.nan),
        sy=np.where(used, sy, np.nan),
        trend_x=trend_x,
        trend_y=trend_y,
    )
