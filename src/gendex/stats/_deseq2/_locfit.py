"""DESeq2's local dispersion trend: ``locfit(log(disp) ~ log(mean), weights = mean)`` with locfit's defaults.

R DESeq2 switches to this fit when the parametric trend fails (or ``fitType = "local"``), for instance on
nearly-Poisson technical replicates. locfit's defaults as DESeq2 calls it, re-implemented for one predictor:

- nearest-neighbour bandwidth: at a fitting point ``x0`` the bandwidth ``h`` is the ``floor(0.7 n)``-th smallest
  ``|x - x0|``; local quadratic least squares with tricube weights ``(1 - (|x - x0| / h)^3)^3`` times the prior
  weights (the means);
- adaptive tree of fitting points: the cell ``[min(x), max(x)]`` is halved while its width exceeds
  ``0.8 * min(h at its two ends)``; the fit (value and slope) is made at every cell end;
- evaluation: cubic Hermite interpolation of the fits within the cell, linear extrapolation from the boundary
  slope outside ``[min(x), max(x)]``, both applied to the residual from a global weighted quadratic (locfit's
  "parametric component"), which is then added back.
"""

from __future__ import annotations

import numpy as np

_ALPHA = 0.7
_CUT = 0.8


def _quadratic_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, x0: float) -> tuple[float, float]:
    """Value and slope at ``x0`` of the weighted least-squares quadratic in ``x - x0``."""
    keep = w > 0
    dx = x[keep] - x0
    sw = np.sqrt(w[keep])
    basis = np.column_stack([np.ones(dx.size), dx, dx * dx / 2]) * sw[:, None]
    coef, *_ = np.linalg.lstsq(basis, y[keep] * sw, rcond=None)
    return float(coef[0]), float(coef[1])


class LocfitTrend:
    """The fitted local trend; call it with means to get fitted dispersions (``exp`` of the log-scale fit)."""

    def __init__(self, means: np.ndarray, disps: np.ndarray) -> None:
        x = np.log(np.asarray(means, dtype=np.float64))
        y = np.log(np.asarray(disps, dtype=np.float64))
        pw = np.asarray(means, dtype=np.float64)
        n = x.size
        if n < 3:
            raise ValueError("the local dispersion trend needs at least 3 genes")
        self._k = int(n * _ALPHA + 1e-12)
        self._x, self._y, self._pw = x, y, pw
        # global quadratic (every point with its prior weight) around the weighted mean
        self._xbar = float(np.sum(x * pw) / np.sum(pw))
        keep = pw > 0
        dx = x[keep] - self._xbar
        sw = np.sqrt(pw[keep])
        basis = np.column_stack([np.ones(dx.size), dx, dx * dx / 2]) * sw[:, None]
        self._pc, *_ = np.linalg.lstsq(basis, y[keep] * sw, rcond=None)
        self._lo, self._hi = float(x.min()), float(x.max())
        self._vertex: dict[float, tuple[float, float, float]] = {}  # x -> (value - pc, slope - pc', h)
        for v in (self._lo, self._hi):
            self._fit_vertex(v)
        self._grow(self._lo, self._hi)

    def _global(self, x0):
        dx = np.asarray(x0) - self._xbar
        c = self._pc
        return c[0] + c[1] * dx + c[2] * dx * dx / 2, c[1] + c[2] * dx

    def _fit_vertex(self, x0: float) -> None:
        dist = np.abs(self._x - x0)
        k = self._k
        h = float(np.partition(dist, k - 1)[k - 1]) if k < dist.size else float(dist.max() * (k / dist.size))
        if h > 0:
            u = dist / h
            kern = np.where(u < 1, (1 - u**3) ** 3, 0.0)
        else:
            kern = (dist == 0).astype(np.float64)
        f0, f1 = _quadratic_fit(self._x, self._y, kern * self._pw, x0)
        g0, g1 = self._global(x0)
        self._vertex[x0] = (f0 - float(g0), f1 - float(g1), h)

    def _needs_split(self, lo: float, hi: float) -> bool:
        hs = [self._vertex[lo][2], self._vertex[hi][2]]
        hs = [h for h in hs if h > 0]
        if not hs:
            return False
        return (hi - lo) / min(hs) > _CUT

    def _grow(self, lo: float, hi: float) -> None:
        if not self._needs_split(lo, hi):
            return
        mid = (lo + hi) / 2
        if mid not in self._vertex:
            self._fit_vertex(mid)
        self._grow(lo, mid)
        self._grow(mid, hi)

    def log_fit(self, log_means: np.ndarray) -> np.ndarray:
        """The fit on the log scale at ``log_means``."""
        z = np.atleast_1d(np.asarray(log_means, dtype=np.float64))
        out = np.empty(z.size)
        for i, x0 in enumerate(z):
            lo, hi = self._lo, self._hi
            while self._needs_split(lo, hi):
                mid = (lo + hi) / 2
                if 2 * (x0 - lo) < hi - lo:
                    hi = mid
                else:
                    lo = mid
            f0, d0, _ = self._vertex[lo]
            f1, d1, _ = self._vertex[hi]
            width = hi - lo
            h = (x0 - lo) / width if width > 0 else 0.0
            if h < 0:
                s = f0 + d0 * (x0 - lo)
            elif h > 1:
                s = f1 + d1 * (x0 - hi)
            else:
                phi1 = h * h * (3 - 2 * h)
                s = (1 - phi1) * f0 + phi1 * f1 + (h * (1 - h) ** 2 * d0 + h * h * (h - 1) * d1) * width
            out[i] = s
        return out + self._global(z)[0]

    def __call__(self, means: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.exp(self.log_fit(np.log(np.asarray(means, dtype=np.float64))))


def locfit_trend(means: np.ndarray, disps: np.ndarray, min_disp: float):
    """R DESeq2's ``localDispersionFit``: the trend function of mean fitted to genes with ``disp >= 10 minDisp``."""
    means = np.asarray(means, dtype=np.float64)
    disps = np.asarray(disps, dtype=np.float64)
    use = disps >= min_disp * 10
    if not use.any():
        return lambda q: np.full(np.shape(q), min_disp)
    return LocfitTrend(means[use], disps[use])
