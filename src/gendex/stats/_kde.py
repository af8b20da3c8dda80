"""Kernel density estimation on a grid (R's ``density()`` defaults): the kernel behind ``pl.density``."""

from __future__ import annotations

import numpy as np


def bandwidth_nrd0(x: np.ndarray) -> float:
    """R's ``bw.nrd0``: ``0.9 * min(sd, IQR / 1.34) * n^(-1/5)`` with R's fallbacks for degenerate data."""
    sd = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    q75, q25 = np.percentile(x, [75, 25])
    lo = min(sd, (q75 - q25) / 1.34)
    if lo <= 0:
        lo = sd or abs(float(x[0])) or 1.0
    return 0.9 * lo * x.size ** (-0.2)


def binned_kde(x: np.ndarray, grid: np.ndarray, bw: float) -> np.ndarray:
    """Gaussian kernel density of ``x`` on the evenly spaced ``grid`` (linear binning, then a convolution)."""
    dx = grid[1] - grid[0]
    pos = np.clip((x - grid[0]) / dx, 0, len(grid) - 1)
    left = np.floor(pos).astype(int)
    frac = pos - left
    right = np.minimum(left + 1, len(grid) - 1)
    weights = np.bincount(left, 1 - frac, minlength=len(grid)) + np.bincount(right, frac, minlength=len(grid))
    half = int(np.ceil(4 * bw / dx))
    offsets = np.arange(-half, half + 1) * dx
    kernel = np.exp(-0.5 * (offsets / bw) ** 2) / (bw * np.sqrt(2 * np.pi))
    return np.convolve(weights, kernel)[half : half + len(grid)] / x.size
