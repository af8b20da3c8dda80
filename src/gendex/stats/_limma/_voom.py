"""voom (Law et al. 2014): log-CPM values with precision weights from the lowess mean-variance trend."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._lowess import _approx_rule2, lowess
from ._lmfit import LinearFit, _check_design, lm_fit


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
    trend = _Trend.fit(fit.amean, fit.sigma, c.sum(axis=0) > 0, log_lib, span)
    return trend.result(y, trend.weights(x, fit.coefficients, log_lib), lib)


@dataclass(frozen=True)
class _Trend:
    """voom's mean-variance trend: each gene's ``sx``, ``sy`` (NaN where unused) and the lowess line."""

    sx: NDArray[np.float64]
    sy: NDArray[np.float64]
    x: NDArray[np.float64]
    y: NDArray[np.float64]

    @classmethod
    def fit(cls, amean: NDArray, sigma: NDArray, used: NDArray, log_lib: NDArray, span: float) -> _Trend:
        sx = amean + log_lib.mean() - np.log2(1e6)
        sy = np.sqrt(sigma)
        if used.sum() < 2:
            raise ValueError("voom needs at least two genes with non-zero counts")
        trend_x, trend_y = lowess(sx[used], sy[used], f=span)
        return cls(np.where(used, sx, np.nan), np.where(used, sy, np.nan), trend_x, trend_y)

    def weights(self, design: NDArray, coefficients: NDArray, log_lib: NDArray) -> NDArray[np.float64]:
        fitted_log_count = design @ coefficients.T + log_lib[:, None] - np.log2(1e6)
        return 1.0 / _approx_rule2(self.x, self.y, fitted_log_count) ** 4

    def result(self, log_cpm: NDArray, weights: NDArray, lib: NDArray) -> VoomResult:
        return VoomResult(log_cpm, weights, lib, self.sx, self.sy, self.x, self.y)


def voom_fit_lazy(
    counts, design: ArrayLike, *, lib_size: ArrayLike, span: float = 0.5, coef_names=None
) -> tuple[LinearFit, VoomResult]:
    """:func:`voom` then the weighted :func:`lm_fit` on checked dask counts, in two passes over gene blocks.

    voom's trend needs every gene's mean and residual sd (small vectors, first pass); the weights and the
    weighted fit then follow block by block (second pass; the unweighted fit of the block is redone there, from
    the same numbers). Returns the weighted fit and a :class:`VoomResult` whose ``log_cpm`` and ``weights``
    are empty (samples x genes matrices are never built).
    """
    from ..._lazy import map_blocks

    n, g = counts.shape
    if g < 2:
        raise ValueError("voom needs at least two genes to fit a mean-variance trend")
    lib = np.asarray(lib_size, dtype=np.float64)
    if lib.shape != (n,) or not (np.isfinite(lib).all() and (lib > 0).all()):
        raise ValueError("library sizes must be positive and finite, one per sample")
    x = _check_design(design, n)
    log_lib = np.log2(lib + 1.0)

    def first(block: NDArray, sl: slice):
        c, y = _log_cpm(block, log_lib)
        fit = lm_fit(y, x)
        return fit.amean, fit.sigma, c.sum(axis=0) > 0

    parts = map_blocks(first, counts, axis=1, n_arrays=12)
    amean, sigma, used = (np.concatenate([p[k] for p in parts]) for k in range(3))
    trend = _Trend.fit(amean, sigma, used, log_lib, span)

    def second(block: NDArray, sl: slice) -> LinearFit:
        _, y = _log_cpm(block, log_lib)
        weights = trend.weights(x, lm_fit(y, x).coefficients, log_lib)
        return lm_fit(y, x, weights=weights, coef_names=coef_names)

    fits = map_blocks(second, counts, axis=1, n_arrays=16)
    fields = ("coefficients", "stdev_unscaled", "cov_unscaled", "sigma", "df_residual", "amean")
    joined: dict[str, Any] = {f: np.concatenate([getattr(p, f) for p in fits]) for f in fields}
    fit = replace(fits[0], **joined)
    empty = np.empty((n, 0))
    return fit, trend.result(empty, empty, lib)


def _log_cpm(block: NDArray, log_lib: NDArray) -> tuple[NDArray, NDArray]:
    c = np.asarray(block, dtype=np.float64)
    return c, np.log2(c + 0.5) - log_lib[:, None] + np.log2(1e6)
