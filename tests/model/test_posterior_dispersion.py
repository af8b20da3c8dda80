"""The posterior of each log dispersion on a grid (``gendex.model._dispersion.posterior_nodes``).

The generative DE integrates every gene's log fold change over its dispersion posterior at a few nodes. These
tests check the nodes against a brute-force integration and check that, on genes whose dispersions are drawn
from the prior itself, the posterior they describe is calibrated where a normal at the mode is not.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gendex.model import _dispersion

F64 = torch.float64


def _nb(rng, mu, alpha):
    shape = 1.0 / alpha
    return rng.poisson(rng.gamma(shape, mu / shape))


def _prior(trend: np.ndarray, sd: float, tail_share: float, tail_shift: float) -> _dispersion.LogDispersionPrior:
    """A normal around the trend with a share ``tail_share`` of genes ``tail_shift`` sds above it."""
    w = np.zeros(_dispersion.TAIL_SHIFTS.size)
    w[np.argmin(np.abs(_dispersion.TAIL_SHIFTS))] = 1.0 - tail_share
    w[np.argmin(np.abs(_dispersion.TAIL_SHIFTS - tail_shift))] += tail_share
    return _dispersion.LogDispersionPrior(torch.as_tensor(np.log(trend), dtype=F64), sd, w)


def _draw_from_prior(rng, g: int, sd: float, tail_share: float, tail_shift: float) -> np.ndarray:
    tail = rng.random(g) < tail_share
    return rng.normal(0.0, sd, g) + np.where(tail, tail_shift * sd, 0.0)


def _nodes(y, mu, moments, prior, centre, no_prior=None):
    g = y.shape[1]
    lo = torch.full((g,), math.log(1e-6), dtype=F64)
    hi = torch.full((g,), math.log(50.0), dtype=F64)
    none = torch.zeros(g, dtype=torch.bool) if no_prior is None else no_prior
    out = _dispersion.posterior_nodes(y, mu, moments, prior, slice(None), centre, lo, hi, none).numpy()
    return out[:, :-1], out[:, -1]


def test_grid_nodes_match_a_brute_force_integration():
    """Nodes and second moment of the grid posterior agree with a 4,001-point integration, bimodal genes too."""
    rng = np.random.default_rng(5)
    n, g = 4, 200
    base = np.exp(rng.uniform(np.log(20), np.log(500), g))
    trend = 0.05 + 1.0 / base
    prior = _prior(trend, 0.5, 0.1, 5.0)  # a tail 2.5 (log) above the trend: two modes for some genes
    alpha = trend * np.exp(_draw_from_prior(rng, g, 0.5, 0.1, 5.0))
    y = torch.as_tensor(_nb(rng, np.broadcast_to(base, (n, g)), alpha), dtype=F64)
    mu = torch.as_tensor(np.broadcast_to(base, (n, g)).copy(), dtype=F64)
    moments = torch.ones(n, 1, 1, dtype=F64)
    centre = torch.as_tensor(np.log(trend), dtype=F64)
    z, second = _nodes(y, mu, moments, prior, centre)

    x = np.linspace(math.log(1e-6), math.log(50.0), 4001)
    lik = _dispersion._Likelihood(y, mu, moments)
    lp = np.stack([(lik(t) + prior(t)).numpy() for t in (torch.full((g,), v, dtype=F64) for v in x)], 1)
    p = np.exp(lp - lp.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    c = np.log(trend)
    np.testing.assert_allclose(second, (p * (x - c[:, None]) ** 2).sum(1), rtol=0.005)
    cum = np.cumsum(p, 1)
    edges = np.concatenate([[0.0], np.cumsum(_dispersion.NODE_BINS)])
    probs = np.asarray(_dispersion.NODE_BINS)
    brute = np.empty((g, len(probs)))
    for j in range(len(probs)):
        mass = np.clip(np.minimum(cum, edges[j + 1]) - np.maximum(cum - p, edges[j]), 0.0, None)
        brute[:, j] = (mass * x).sum(1) / mass.sum(1)
    # the nodes are the bins' means rescaled about the posterior mean to the posterior's variance
    mean = (p * x).sum(1)
    var = (p * (x - mean[:, None]) ** 2).sum(1)
    spread = ((brute - mean[:, None]) ** 2 * probs).sum(1)
    brute = mean[:, None] + (brute - mean[:, None]) * np.sqrt(var / spread)[:, None]
    nodes = c[:, None] + z * np.sqrt(second)[:, None]
    err = np.abs(nodes - brute) / np.sqrt(var)[:, None]
    # a tenth of a posterior sd in a node's log dispersion moves its log fold change sd by well under 1%
    assert np.quantile(err, 0.95) < 0.1 and err.max() < 0.2, np.quantile(err, [0.5, 0.95, 1.0])
    # the outer nodes reach the tails: the 2% bins' means lie beyond 2 posterior sds
    assert np.median((brute[:, -1] - mean) / np.sqrt(var)) > 2.0
    above = x[None, :] > c[:, None] + 1.5
    near = np.abs(x[None, :] - c[:, None]) < 0.5
    bimodal = ((p * above).sum(1) > 0.1) & ((p * near).sum(1) > 0.1)
    assert bimodal.sum() >= 5  # the test covers genes whose posterior has a mode at the trend and one in the tail


def test_grid_posterior_is_calibrated_where_the_normal_at_the_mode_is_not():
    """Dispersions drawn from the prior (10% in a tail 2.5 above the trend), 3 residual degrees of freedom: the
    squared error of the truth about the centre averages to the grid posterior's second moment (a posterior's
    defining property, up to Monte Carlo error), while the normal at the MAP (minus the inverse curvature)
    understates it for the genes of the tail."""
    rng = np.random.default_rng(6)
    n, g = 4, 4000
    base = np.exp(rng.uniform(np.log(20), np.log(2000), g))
    trend = 0.05 + 1.0 / base
    prior = _prior(trend, 0.5, 0.1, 5.0)
    delta = _draw_from_prior(rng, g, 0.5, 0.1, 5.0)
    alpha = trend * np.exp(delta)
    y = torch.as_tensor(_nb(rng, np.broadcast_to(base, (n, g)), alpha), dtype=F64)
    mu = y.mean(0).expand(n, -1).clone()  # the fitted mean of an intercept-only GLM (Cox-Reid adjusts for it)
    moments = torch.ones(n, 1, 1, dtype=F64)
    gw = _dispersion.fit_log_dispersion(y, mu, moments)
    lower = torch.minimum(gw, prior.mean) - 0.5
    upper = torch.maximum(gw, prior.mean) + 0.5
    mode = _dispersion.fit_log_dispersion(y, mu, moments, prior=prior, bracket=(lower, upper))
    laplace = _dispersion.log_dispersion_variance(y, mu, moments, mode, prior=prior).numpy()
    _, second = _nodes(y, mu, moments, prior, mode)
    err2 = (np.log(alpha) - mode.numpy()) ** 2
    # a subset chosen by the data (not by the truth): genes whose gene-wise estimate lies above the trend
    high = (gw - prior.mean).numpy() > 1.0
    ratio_grid = err2.mean() / second.mean()
    ratio_grid_tail = err2[high].mean() / second[high].mean()
    ratio_laplace_tail = err2[high].mean() / laplace[high].mean()
    print(ratio_grid, ratio_grid_tail, ratio_laplace_tail, err2.mean() / laplace.mean(), high.sum())
    # Monte Carlo: the mean of ~400 squared errors (heavy tailed) has a relative sd of about 0.1
    assert 0.85 < ratio_grid < 1.15, ratio_grid
    assert 0.7 < ratio_grid_tail < 1.3, ratio_grid_tail
    assert ratio_laplace_tail > 1.5, ratio_laplace_tail


def test_prior_variance_follows_the_data_below_deseq2s_floor():
    """The prior variance of the log dispersions is DESeq2's estimate without its fixed floor of 0.25: a planted
    scatter of variance 0.16 (the simulator's default) is recovered, 0.49 too, and with no scatter at all the
    estimate stops at the bound set by its own noise instead of at 0 (which would shrink every gene onto the
    trend) or at 0.25."""
    rng = np.random.default_rng(7)
    n, g = 8, 4000
    base = np.exp(rng.uniform(np.log(30), np.log(3000), g))
    trend = 0.05 + 1.0 / base
    moments = torch.ones(n, 1, 1, dtype=F64)
    estimates = {}
    for var in (0.0, 0.16, 0.49):
        alpha = trend * np.exp(rng.normal(0.0, math.sqrt(var), g))
        y = torch.as_tensor(_nb(rng, np.broadcast_to(base, (n, g)), alpha), dtype=F64)
        mu = y.mean(0).expand(n, -1).clone()
        gw = np.exp(_dispersion.fit_log_dispersion(y, mu, moments).numpy())
        estimates[var] = _dispersion.estimated_prior_variance(gw, trend, n, 1)
    # DESeq2's moment estimator (the squared MAD of a skewed log chi-square less its variance) is biased by about
    # +0.05 at 7 residual degrees of freedom; its standard error here is about 0.02
    assert 0.12 < estimates[0.16] < 0.24, estimates
    assert abs(estimates[0.49] - 0.49) < 0.1, estimates
    # no scatter: the bound 1.96 standard errors of the squared MAD, far below 0.25 with 4,000 genes
    assert 0.0 < estimates[0.0] < 0.06, estimates


def test_map_from_the_grid_posterior_matches_the_search():
    """The MAP dispersions read off the grid posterior agree with the golden-section search's."""
    rng = np.random.default_rng(11)
    n, g = 6, 1500
    base = np.exp(rng.uniform(np.log(5), np.log(3000), g))
    alpha = (0.05 + 1.0 / base) * np.exp(rng.normal(0, 0.6, g))
    y = torch.as_tensor(_nb(rng, np.broadcast_to(base, (n, g)), alpha), dtype=F64)
    mu = torch.as_tensor(np.broadcast_to(y.numpy().mean(0), (n, g)).copy(), dtype=F64)
    moments = torch.ones(n, 1, 1, dtype=F64)
    grid = _dispersion.fit_dispersions(y, mu, moments, base)
    search = _dispersion.fit_dispersions(y, mu, moments, base, nodes=False)
    np.testing.assert_array_equal(grid.log_genewise, search.log_genewise)
    gap = np.abs(grid.log_map - search.log_map) / np.sqrt(search.log_final_var)
    assert np.median(gap) < 0.02
    assert np.quantile(gap, 0.99) < 0.06
    np.testing.assert_array_equal(grid.log_final, grid.log_map)  # heavy tail: every gene its MAP
