"""voom (Law et al. 2014): log-CPM values with precision weights from the lowess mean-variance trend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._lowess import _approx_rule2, lowess
from ._lmfit import _check_design, lm_fit


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
