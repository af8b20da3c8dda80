"""limma's empirical Bayes moderation (Smyth 2004): trigammaInverse, fitFDist, squeezeVar, tmixture, eBayes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from ._lmfit import LinearFit


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
        scale = float(np.mean(np.asarray(x, dtype=np.float64)))
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
