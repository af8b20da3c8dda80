import numpy as np
from scipy.integrate import trapezoid

from gendex.stats._kde import bandwidth_nrd0, binned_kde


def test_bandwidth_is_r_bw_nrd0():
    x = np.arange(1.0, 11.0)  # R: bw.nrd0(1:10) = 0.9 * min(sd, IQR/1.34) * 10^(-1/5)
    expected = 0.9 * min(np.std(x, ddof=1), (7.75 - 3.25) / 1.34) * 10 ** (-0.2)
    assert np.isclose(bandwidth_nrd0(x), expected)
    assert bandwidth_nrd0(np.full(5, 2.0)) > 0  # degenerate data fall back like R


def test_binned_kde_matches_an_exact_gaussian_kde():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 0.5, 300), rng.normal(4, 1.5, 700)])
    bw = bandwidth_nrd0(x)
    grid = np.linspace(x.min() - 3 * bw, x.max() + 3 * bw, 512)
    exact = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / bw) ** 2).sum(1) / (x.size * bw * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(binned_kde(x, grid, bw), exact, atol=2e-3 * exact.max())
    assert np.isclose(trapezoid(binned_kde(x, grid, bw), grid), 1.0, atol=1e-3)
