"""R's ``lowess`` (Cleveland 1979, 1981) and ``approxfun(rule=2)``, on arrays."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


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
