"""DESeq2-style empirical-Bayes dispersions given fitted means (torch kernels; no AnnData).

The NB-VAE decoder is a per-gene GLM on shared features ``x_i = [1, z_i, c_i]``. Given the fitted means, this
module estimates gene-wise dispersions by maximising the Cox-Reid adjusted profile likelihood (as DESeq2), fits
the DESeq2 engine's mean-dispersion trend and prior variance (:mod:`gendex.stats`), adds a one-sided heavy tail
above the trend to the prior (estimated from the data), and computes the maximum a-posteriori dispersions and
their posterior variance on the log scale. Everything works on the natural log of the dispersion ``alpha``
(``Var = mu + alpha mu^2``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import polygamma
from scipy.stats import chi2, norm

from ..stats._deseq2._trend import TrendFitError, local_trend, parametric_trend, prior_variance

logger = logging.getLogger(__name__)

MIN_DISP = 1e-8


def nb_loglik(y: torch.Tensor, mu: torch.Tensor, log_alpha: torch.Tensor, *, constant: bool = True) -> torch.Tensor:
    """Negative-binomial log likelihood summed over samples: ``y``, ``mu`` ``(n, G)``, ``log_alpha`` ``(G,)``.

    ``constant=False`` drops ``-log y!``, which does not depend on the parameters.
    """
    r = torch.exp(-log_alpha)
    log_r_mu = torch.log(r + mu)
    ll = torch.lgamma(y + r) - torch.lgamma(r) + r * (torch.log(r) - log_r_mu) + y * (torch.log(mu) - log_r_mu)
    if constant:
        ll = ll - torch.lgamma(y + 1.0)
    return ll.sum(0)


def cox_reid(mu: torch.Tensor, log_alpha: torch.Tensor, moments: torch.Tensor) -> torch.Tensor:
    """Cox-Reid adjustment ``-0.5 log det(sum_i w_ig E[x_i x_i^T])`` with NB weights ``w = mu / (1 + alpha mu)``.

    ``moments`` holds the second moments of the per-sample design features, shape ``(n, p, p)``.
    """
    p = moments.shape[-1]
    return _cox_reid_flat(mu, log_alpha, moments.reshape(moments.shape[0], p * p).T.contiguous(), p)


def _cox_reid_flat(mu: torch.Tensor, log_alpha: torch.Tensor, flat_moments: torch.Tensor, p: int) -> torch.Tensor:
    """:func:`cox_reid` with the moments as a ``(p * p, n)`` matrix (made once per fit, not once per call)."""
    w = mu / (1.0 + torch.exp(log_alpha) * mu)
    return -0.5 * _logdet_spd((flat_moments @ w).reshape(p, p, -1))


def _logdet_spd(a: torch.Tensor) -> torch.Tensor:
    """``log det`` of every symmetric matrix ``a[:, :, g]`` (``(p, p, G)``, overwritten); 0 where not positive definite.

    Gaussian elimination without pivoting, vectorised over the genes: its pivots are the squared diagonal of the
    Cholesky factor, so a matrix is positive definite exactly when every pivot is positive (as a Cholesky
    factorisation decides it), and the log determinant is the sum of their logs. A few ops on ``(G,)`` vectors per
    step instead of a batched LAPACK call per tiny matrix.
    """
    p = a.shape[0]
    for k in range(p - 1):
        row = a[k, k + 1 :] / a[k, k]
        a[k + 1 :, k + 1 :].addcmul_(a[k + 1 :, k, None], row[None], value=-1.0)
    pivots = torch.diagonal(a)  # (G, p): the diagonal is final once its row has been eliminated
    logdet = torch.log(pivots).sum(-1)
    return torch.where((pivots > 0).all(-1), logdet, torch.zeros_like(logdet))


def _nb_loglik_alpha(
    y: torch.Tensor, mu: torch.Tensor, log_alpha: torch.Tensor, lgamma_yr: torch.Tensor | None = None
) -> torch.Tensor:
    """The part of :func:`nb_loglik` that depends on ``alpha`` (``mu`` fixed), summed over samples; cheaper.

    ``lgamma_yr``, when given, is ``lgamma(y + 1 / alpha)`` (``(n, G)``, overwritten), computed by the caller.
    """
    r = torch.exp(-log_alpha)
    n = y.shape[0]
    yr = y + r
    per_sample = torch.lgamma(yr) if lgamma_yr is None else lgamma_yr
    per_sample -= torch.log(mu + r).mul_(yr)
    return per_sample.sum(0) + n * (r * torch.log(r) - torch.lgamma(r))


@dataclass
class LogDispersionPrior:
    """Prior of ``log alpha_g``: ``sum_k w_k N(trend_g + shift_k sd, sd^2)`` (``shift_k`` from TAIL_SHIFTS).

    With all weight on the first component it is DESeq2's normal prior around the trend.
    """

    mean: torch.Tensor  # (G,) log trend
    sd: float
    weights: np.ndarray

    def __call__(self, log_alpha: torch.Tensor, genes: slice = slice(None)) -> torch.Tensor:
        return log_prior(log_alpha - self.mean[genes], self.sd, self.weights)


class _Likelihood:
    """The Cox-Reid adjusted NB log likelihood of a chunk of genes as a function of ``log alpha`` (``mu`` fixed).

    What does not depend on ``alpha`` (the moments as a ``(p * p, n)`` matrix) is prepared once per fit. With
    ``uniform=True`` (the same ``log alpha`` for every gene, as on the gene-wise grid) ``lgamma(y + 1 / alpha)``
    is computed once per distinct count and gathered: the same numbers for a fraction of the work.
    """

    def __init__(self, y: torch.Tensor, mu: torch.Tensor, moments: torch.Tensor | None):
        self.y, self.mu = y, mu
        self.p = 0 if moments is None else moments.shape[-1]
        self.flat = None if moments is None else moments.reshape(moments.shape[0], -1).T.contiguous()
        self._distinct: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, log_alpha: torch.Tensor, *, uniform: bool = False) -> torch.Tensor:
        lgamma_yr = None
        if uniform and log_alpha.numel():
            if self._distinct is None:
                self._distinct = torch.unique(self.y, return_inverse=True)
            values, where = self._distinct
            lgamma_yr = torch.lgamma(values + torch.exp(-log_alpha[:1]))[where]
        obj = _nb_loglik_alpha(self.y, self.mu, log_alpha, lgamma_yr)
        if self.flat is not None:
            obj = obj + _cox_reid_flat(self.mu, log_alpha, self.flat, self.p)
        return obj


def _objective(lik: _Likelihood, log_alpha, prior, genes, *, uniform: bool = False):
    obj = lik(log_alpha, uniform=uniform)
    if prior is not None:
        obj = obj + prior(log_alpha, genes)
    return obj


def _argmax_on_grid(lik, centre, offsets, prior, genes, lo, hi, *, uniform: bool = False):
    """The best of the points ``centre + offset`` (clamped to ``[lo, hi]``) per gene, and its objective.

    ``uniform``: ``centre`` is the same for every gene and the offsets are numbers.
    """
    best_x = torch.clamp(centre + offsets[0], lo, hi)
    best_val = _objective(lik, best_x, prior, genes, uniform=uniform)
    for off in offsets[1:]:
        x = torch.clamp(centre + off, lo, hi)
        val = _objective(lik, x, prior, genes, uniform=uniform)
        better = val > best_val
        best_val = torch.where(better, val, best_val)
        best_x = torch.where(better, x, best_x)
    return best_x, best_val


def fit_log_dispersion(
    y: torch.Tensor,
    mu: torch.Tensor,
    moments: torch.Tensor | None,
    *,
    prior: LogDispersionPrior | None = None,
    genes: slice = slice(None),
    max_disp: float = 10.0,
    grid_step: float = 1.0,
    n_golden: int = 14,
    bracket: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Maximise the (Cox-Reid adjusted, optionally penalised) NB likelihood in ``log alpha`` for every gene.

    A grid with step ``grid_step`` over ``[log 1e-8, log max_disp]`` brackets the maximum, then ``n_golden``
    golden-section steps within one grid step on either side refine it (14 steps: to about 0.002 for step 1,
    far below the posterior sd of a log dispersion); robust for every gene at once, unlike Newton steps from
    one start. ``genes`` selects the prior's genes when ``y`` holds a chunk of them. With ``bracket = (lower,
    upper)`` (per gene) six points across it replace the grid (the MAP lies between the gene-wise estimate and
    the trend).
    """
    lik = _Likelihood(y, mu, moments)
    lo, hi = math.log(MIN_DISP), math.log(max_disp)
    g = y.shape[1]
    if bracket is None:
        start = torch.full((g,), lo, dtype=y.dtype, device=y.device)
        coarse = np.arange(0.0, hi - lo + grid_step, grid_step).tolist()
        x, f_x = _argmax_on_grid(lik, start, coarse, prior, genes, lo, hi, uniform=True)
        step = torch.full((g,), grid_step, dtype=y.dtype, device=y.device)
    else:  # six points across a per-gene bracket known to hold the maximum
        start, stop = (torch.clamp(t, lo, hi) for t in bracket)
        step = torch.clamp((stop - start) / 5.0, min=1e-3)
        x, f_x = _argmax_on_grid(lik, start, [step * i for i in range(6)], prior, genes, lo, hi)
    a, b = torch.clamp(x - step, lo, hi), torch.clamp(x + step, lo, hi)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc = _objective(lik, c, prior, genes)
    fd = _objective(lik, d, prior, genes)
    for _ in range(n_golden):
        left = fc > fd  # the maximum lies in [a, d]
        b = torch.where(left, d, b)
        a = torch.where(left, a, c)
        new_c, new_d = b - ratio * (b - a), a + ratio * (b - a)
        # reuse the surviving point, evaluate the new one
        c_next = torch.where(left, new_c, d)
        d_next = torch.where(left, c, new_d)
        f_new = _objective(lik, torch.where(left, new_c, new_d), prior, genes)
        fc, fd = torch.where(left, f_new, fd), torch.where(left, fc, f_new)
        c, d = c_next, d_next
    best = torch.where(fc > fd, c, d)
    # keep the grid point if it is better (flat likelihoods at the boundary)
    f_best = torch.maximum(fc, fd)
    return torch.where(f_x > f_best, x, best)


def _curvature_variance(f: list[torch.Tensor], h: float) -> torch.Tensor:
    """Minus the inverse curvature from the objective at ``x, x - h, x + h`` (clamped to ``[1e-4, 4]``)."""
    f0, fm, fp = f
    curv = (fp - 2 * f0 + fm) / h**2
    var = torch.where(curv < 0, -1.0 / curv, torch.full_like(curv, 4.0))
    return torch.clamp(var, 1e-4, 4.0)


def _laplace_variance(y, mu, moments, at, prior, likelihood_only, genes):
    """Posterior variance of ``log alpha`` of the genes ``genes`` at ``at`` (minus the inverse curvature).

    The likelihood's alone where ``likelihood_only``, else with ``prior``.
    """
    with_prior, without = _variances(_Likelihood(y[:, genes], mu[:, genes], moments), at[genes], prior, genes)
    return torch.where(likelihood_only[genes], without, with_prior)


def log_dispersion_variance(y, mu, moments, log_alpha, *, prior=None, genes=slice(None), h: float = 0.05):
    """Posterior variance of ``log alpha``: minus the inverse curvature of the objective (finite differences)."""
    return _variances(_Likelihood(y, mu, moments), log_alpha, prior, genes, h)[0]


def _variances(lik: _Likelihood, log_alpha, prior, genes, h: float = 0.05):
    """:func:`log_dispersion_variance` with ``prior`` and (second, None without a prior) without it.

    The likelihood at the three points is computed once for both.
    """
    xs = (log_alpha, log_alpha - h, log_alpha + h)
    liks = [lik(x) for x in xs]
    without = _curvature_variance(liks, h) if prior is not None else None
    with_prior = liks if prior is None else [v + prior(x, genes) for v, x in zip(liks, xs, strict=True)]
    return _curvature_variance(with_prior, h), without


def fit_trend(base_mean: np.ndarray, disp: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """The DESeq2 engine's mean-dispersion trend (:mod:`gendex.stats`), as R DESeq2 chooses it.

    The parametric fit ``a0 + a1 / mean`` (:func:`~gendex.stats._deseq2._trend.parametric_trend`), the local
    regression where it fails, and the trimmed mean of the dispersions where fewer than three genes are usable.
    Returns ``(kind, coefficients, trend at every gene)``; ``coefficients`` are NaN for the local fit.
    """
    use = (disp > 100 * MIN_DISP) & (base_mean > 0) & np.isfinite(disp)
    inv = np.where(base_mean > 0, 1.0 / np.maximum(base_mean, 1e-300), 0.0)
    if use.sum() >= 3:
        try:
            coefs = parametric_trend(base_mean[use], disp[use])
            return "parametric", coefs, np.maximum(coefs[0] + coefs[1] * inv, MIN_DISP)
        except TrendFitError as err:
            logger.info("parametric dispersion trend failed (%s); using a local regression, as R DESeq2 does", err)
            fun = local_trend(base_mean[use], disp[use], MIN_DISP)
            values = fun(np.where(base_mean > 0, base_mean, base_mean[use].min()))
            return "local", np.array([np.nan, np.nan]), np.maximum(values, MIN_DISP)
    sel = np.sort(disp[(disp > 10 * MIN_DISP) & np.isfinite(disp)])
    trim = int(np.floor(0.001 * sel.size))
    mean_disp = float(sel[trim : sel.size - trim].mean()) if sel.size else 0.1
    return "mean", np.array([mean_disp, 0.0]), np.full(base_mean.shape, mean_disp)


def estimated_prior_variance(disp: np.ndarray, trend: np.ndarray, n_samples: int, n_coef: int) -> float:
    """Prior variance of the log dispersions about the trend: DESeq2's estimate, bounded below by its own noise.

    R DESeq2's estimator (:func:`~gendex.stats._deseq2._trend.prior_variance`: the squared MAD of the log
    residuals less the sampling variance of a gene-wise log dispersion, or the histogram match at 1-3 residual
    degrees of freedom) without its fixed floor of 0.25, which is above the true variance of many data sets (and
    so makes every dispersion posterior wider than the data say). The floor that stays comes from the data: the
    estimate is a difference of two variances and cannot be told from 0 when it is below about two standard
    errors of the squared MAD, ``1.96 x 2.33 var_log / sqrt(G)`` (normal theory: the MAD has 37% of the
    efficiency of the sd), so it is never set lower than that; with few genes this is above 0.25.
    """
    pvar, var_log = prior_variance(disp, trend, n_samples, n_coef, MIN_DISP, floor=0.0)
    used = int(np.sum(disp >= 100 * MIN_DISP))
    if not (np.isfinite(pvar) and np.isfinite(var_log)) or used < 2:
        return 0.25
    return float(max(pvar, 1.96 * 2.33 * var_log / math.sqrt(used)))


def sampling_variance(n_samples: int, n_coef: int) -> float:
    """Sampling variance of a gene-wise log dispersion, ``trigamma((m - p) / 2)`` (DESeq2's approximation)."""
    return float(polygamma(1, max(n_samples - n_coef, 1) / 2.0))


def _log_chisq_density(df: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid and density of ``log(X / df)``, ``X ~ chi2(df)``: the sampling error of a gene-wise log dispersion."""
    u = np.linspace(-20.0, 6.0, 651)
    xval = df * np.exp(u)
    dens = chi2.pdf(xval, df) * xval
    return u, dens / (dens.sum() * (u[1] - u[0]))


#: Shifts of the components of the dispersion prior, in prior standard deviations from the trend: a few below
#: and a long reach above (the heavy upper tail).
TAIL_SHIFTS = np.arange(-1.5, 8.01, 0.5)


def tail_weights(resid: np.ndarray, prior_sd: float, df: int, n_iter: int = 300) -> np.ndarray:
    """Weights of the prior ``sum_k w_k N(shift_k sd, sd^2)`` on ``log alpha - trend`` (``shift_k`` = TAIL_SHIFTS).

    Estimated by EM from the gene-wise residuals ``log alpha_gw - log trend``, each the true deviation plus the
    sampling error of a gene-wise log dispersion, ``log(chi2_df / df)`` with ``df = m - p`` (the model of R
    DESeq2's prior-variance estimate; it is skewed, with a long lower tail, at few degrees of freedom): the
    marginal of a residual under component ``k`` is the convolution of ``N(shift_k sd, sd^2)`` with that error,
    integrated numerically on bins of width 0.05. All weight on ``shift 0`` is DESeq2's normal prior; the
    components above it form a heavy upper tail whose mass and reach come from the data (real cohorts have a
    share of genes far above the trend), and the few below it let the bulk of the genes sit below a trend
    pulled up by that tail.
    """
    mus = TAIL_SHIFTS * prior_sd
    resid = resid[np.isfinite(resid)]
    if resid.size == 0:
        return normal_weights()
    u, f_u = _log_chisq_density(float(max(df, 1)))
    du = u[1] - u[0]
    edges = np.arange(np.floor(resid.min() / 0.05) * 0.05, resid.max() + 0.1, 0.05)
    counts, _ = np.histogram(resid, bins=edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    keep = counts > 0
    centres, counts = centres[keep], counts[keep].astype(float)
    # dens[b, k] = int f_u(e) N(centre_b - e; mu_k, sd^2) de
    dens = np.empty((centres.size, mus.size))
    for k, m in enumerate(mus):
        z = (centres[:, None] - u[None, :] - m) / prior_sd
        dens[:, k] = (np.exp(-0.5 * z**2) * f_u).sum(1) * du / (prior_sd * math.sqrt(2 * math.pi))
    zero = int(np.argmin(np.abs(mus)))
    w = np.full(mus.size, 0.1 / (mus.size - 1))
    w[zero] = 0.9
    for _ in range(n_iter):
        post = dens * w
        post /= np.maximum(post.sum(1, keepdims=True), 1e-300)
        new = (post * counts[:, None]).sum(0) / counts.sum()
        if np.max(np.abs(new - w)) < 1e-7:
            w = new
            break
        w = new
    return w


def normal_weights() -> np.ndarray:
    """Weights of :func:`tail_weights`'s mixture that make it DESeq2's normal prior (all on shift 0)."""
    w = np.zeros(TAIL_SHIFTS.size)
    w[int(np.argmin(np.abs(TAIL_SHIFTS)))] = 1.0
    return w


def log_prior(delta: torch.Tensor, prior_sd: float, weights: np.ndarray) -> torch.Tensor:
    """Log density (up to a constant) of the heavy-tailed prior at ``delta = log alpha - trend``."""
    keep = weights > 1e-8
    mus = torch.as_tensor(TAIL_SHIFTS[keep] * prior_sd, dtype=delta.dtype, device=delta.device)
    logw = torch.as_tensor(np.log(weights[keep]), dtype=delta.dtype, device=delta.device)
    z = (delta[..., None] - mus) / prior_sd
    return torch.logsumexp(logw - 0.5 * z**2, dim=-1)


#: Probabilities of the bins of a log dispersion's posterior whose conditional means are the nodes at which the
#: generative DE integrates over it: finer in the tails, where the dispersion is far from its estimate and the
#: interval of a log fold change widest.
NODE_BINS = (0.02, 0.08, 0.2, 0.2, 0.2, 0.2, 0.08, 0.02)


def normal_nodes(probs: tuple[float, ...] = NODE_BINS) -> np.ndarray:
    """Nodes of a standard normal at the bins ``probs``: each bin's conditional mean, scaled to variance 1."""
    p = np.asarray(probs, dtype=np.float64)
    edges = norm.ppf(np.concatenate([[0.0], np.cumsum(p)[:-1], [1.0]]).clip(0.0, 1.0))
    values = (norm.pdf(edges[:-1]) - norm.pdf(edges[1:])) / p
    return values / np.sqrt((p * values**2).sum())


def _bin_means(grid: np.ndarray, logpost: np.ndarray, probs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Conditional means ``(G, J)`` of each gene's posterior within the probability bins ``probs``, and its mean.

    ``grid`` ``(G, K)`` holds equally spaced points per gene and ``logpost`` the log posterior there; the density
    is taken as uniform within each grid cell (so a bin that falls inside one cell gets its own position in it).
    """
    h = (grid[:, 1] - grid[:, 0])[:, None]
    p = np.exp(logpost - logpost.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    cum = np.cumsum(p, 1)
    prev = cum - p
    edges = np.concatenate([[0.0], np.cumsum(probs)])
    edges[-1] = np.inf
    # cells of negligible mass sit at their centre (and no division by a denormal weight overflows)
    heavy = p > 1e-12
    safe = np.where(heavy, p, 1.0)
    out = np.empty((grid.shape[0], len(probs)))
    for j in range(len(probs)):
        lo_c, hi_c = np.maximum(prev, edges[j]), np.minimum(cum, edges[j + 1])
        mass = np.clip(hi_c - lo_c, 0.0, None)
        # the part of cell k in bin j is [u0, u1] of its width: its mean sits at (u0 + u1) / 2
        mid = np.where(heavy, 0.5 * ((lo_c - prev) + (np.maximum(hi_c, lo_c) - prev)) / safe, 0.5)
        pos = grid - 0.5 * h + h * mid
        out[:, j] = (mass * pos).sum(1) / np.maximum(mass.sum(1), 1e-300)
    return out, (p * grid).sum(1)


def posterior_nodes(
    y: torch.Tensor,
    mu: torch.Tensor,
    moments: torch.Tensor | None,
    prior: LogDispersionPrior,
    genes: slice,
    centre: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    no_prior: torch.Tensor,
    *,
    probs: tuple[float, ...] = NODE_BINS,
    n_coarse: int = 8,
    n_fine: int = 20,
    return_centre: bool = False,
) -> torch.Tensor:
    """Nodes of each gene's posterior of ``log alpha``, computed on a grid, as offsets from ``centre``.

    The posterior (Cox-Reid adjusted likelihood times the prior; the likelihood alone where ``no_prior``) is
    evaluated at ``n_coarse`` points over ``[lower, upper]`` and then at ``n_fine`` points over the part where
    it is within ``exp(-12)`` of its largest value. Returns ``(G, J + 1)``: the first ``J`` columns are the
    conditional means of the posterior within the bins ``probs``, scaled about the posterior mean so that their
    spread is the posterior's variance, in units of ``sd = sqrt(E[(log alpha - centre)^2])``, offsets from
    ``centre``; the last column is ``sd^2``. Where ``centre`` is NaN it is the posterior's mode (its best point
    on the fine grid, refined by the parabola through the neighbouring points), and a last column holds the
    centres with ``return_centre`` (``(G, J + 2)``). The moments are midpoint sums on the fine grid (for a smooth
    posterior, 20 points give the second moment to 1e-4 and the nodes to about 0.07 posterior sds, which moves
    a node's log fold change sd by well under 1%). Unlike a normal at the mode with the curvature's variance,
    this keeps the posterior's skew (a long upper tail at few residual degrees of freedom) and its second mode
    where the heavy-tailed prior and the likelihood disagree (a gene far above the trend whose gene-wise
    estimate happens to sit near it).
    """
    lik = _Likelihood(y, mu, moments)

    def logpost(x: torch.Tensor) -> np.ndarray:  # (G, K) points -> (G, K) log posterior
        cols = []
        for k in range(x.shape[1]):
            v = lik(x[:, k])
            cols.append(v + torch.where(no_prior, torch.zeros_like(v), prior(x[:, k], genes)))
        return torch.stack(cols, 1).cpu().double().numpy()

    steps = torch.linspace(0.0, 1.0, n_coarse, dtype=y.dtype, device=y.device)
    coarse = lower[:, None] + (upper - lower)[:, None] * steps
    lp = logpost(coarse)
    inside = lp >= lp.max(1, keepdims=True) - 12.0
    k = np.arange(n_coarse)
    first = np.where(inside, k, n_coarse).min(1)
    last = np.where(inside, k, -1).max(1)
    cg = coarse.cpu().double().numpy()
    step = cg[:, 1] - cg[:, 0]
    a = cg[np.arange(cg.shape[0]), first] - step
    b = cg[np.arange(cg.shape[0]), last] + step
    fine_steps = np.linspace(0.0, 1.0, n_fine)
    grid = a[:, None] + (b - a)[:, None] * fine_steps
    lp = logpost(torch.as_tensor(grid, dtype=y.dtype, device=y.device))
    c = centre.cpu().double().numpy()
    mode = np.isnan(c)
    if mode.any():  # the posterior's mode: its best fine point, refined by the parabola through its neighbours
        rows, best = np.arange(grid.shape[0]), lp.argmax(1)
        lo_i, hi_i = np.maximum(best - 1, 0), np.minimum(best + 1, n_fine - 1)
        f0, fm, fp = lp[rows, best], lp[rows, lo_i], lp[rows, hi_i]
        h = (b - a) / (n_fine - 1)
        curv = fm - 2.0 * f0 + fp
        inner = (best > 0) & (best < n_fine - 1) & (curv < 0)
        shift = np.where(inner, 0.5 * h * (fm - fp) / np.where(inner, curv, -1.0), 0.0)
        c = np.where(mode, grid[rows, best] + np.clip(shift, -0.5 * h, 0.5 * h), c)
    means, mean = _bin_means(grid, lp, probs)
    w = np.asarray(probs, dtype=np.float64)
    p = np.exp(lp - lp.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    var = (p * (grid - mean[:, None]) ** 2).sum(1)
    spread = ((means - mean[:, None]) ** 2 * w).sum(1)
    means = mean[:, None] + (means - mean[:, None]) * np.sqrt(var / np.maximum(spread, 1e-300))[:, None]
    second = var + (mean - c) ** 2
    z = (means - c[:, None]) / np.sqrt(second)[:, None]
    out = [z, second, c] if return_centre else [z, second]
    return torch.as_tensor(np.column_stack(out), dtype=y.dtype, device=y.device)


@dataclass
class DispersionFit:
    """Result of :func:`fit_dispersions` (arrays per gene, natural-log dispersions)."""

    log_genewise: np.ndarray
    log_trend: np.ndarray
    log_map: np.ndarray
    log_final: np.ndarray
    log_final_var: np.ndarray
    outlier: np.ndarray
    trend_kind: str
    trend_coefs: np.ndarray
    prior_var: float
    tail_weights: np.ndarray
    #: (G, J) nodes of each log dispersion's posterior at the bins of NODE_BINS, in units of
    #: ``sqrt(log_final_var)`` from ``log_final`` (the standard normal's nodes where it was not computed)
    node_z: np.ndarray | None = None

    def nodes(self) -> np.ndarray:
        """:attr:`node_z`, or the normal posterior's nodes for every gene."""
        if self.node_z is not None:
            return self.node_z
        return np.broadcast_to(normal_nodes(), (self.log_final.size, len(NODE_BINS))).copy()

    def to_frame(self, base_mean: np.ndarray, index) -> pd.DataFrame:
        """Genes x ``baseMean, genewise, trend, MAP, dispersion, outlier, log_dispersion_var, node_1, ...``."""
        cols = {
            "baseMean": base_mean,
            "genewise": np.exp(self.log_genewise),
            "trend": np.exp(self.log_trend),
            "MAP": np.exp(self.log_map),
            "dispersion": np.exp(self.log_final),
            "outlier": self.outlier,
            "log_dispersion_var": self.log_final_var,
        }
        cols.update(dict(zip(NODE_COLUMNS, self.nodes().T, strict=True)))
        return pd.DataFrame(cols, index=pd.Index(index).copy())


#: Columns of :meth:`DispersionFit.to_frame` holding :attr:`DispersionFit.node_z`.
NODE_COLUMNS = tuple(f"node_{j + 1}" for j in range(len(NODE_BINS)))


def fit_dispersions(
    y: torch.Tensor,
    mu: torch.Tensor,
    moments: torch.Tensor,
    base_mean: np.ndarray,
    *,
    heavy_tail: bool = True,
    fast: bool = False,
    nodes: bool = True,
    chunk: int = 4096,
) -> DispersionFit:
    """The whole empirical-Bayes procedure: gene-wise -> trend -> prior -> MAP (+ outliers) -> posterior variance.

    ``y`` and ``mu`` are ``(n, G)`` counts and fitted means, ``moments`` ``(n, p, p)`` the second moments of the
    design features, ``base_mean`` the mean normalised counts ``(G,)``. The trend and DESeq2's prior variance
    come from the DESeq2 engine (:mod:`gendex.stats`). With ``heavy_tail`` the prior adds a one-sided heavy tail
    above the trend (:func:`tail_weights`), so genes far above the trend keep their high dispersion (DESeq2
    shrinks them towards it), and every gene's final dispersion is its MAP under that prior (``outlier`` then
    only flags DESeq2's dispersion outliers, more than two prior sds above the trend); without it DESeq2's rule
    applies (outliers keep their gene-wise estimate, with the likelihood's posterior alone). With ``nodes`` the
    posterior of each log dispersion is computed on a grid (:func:`posterior_nodes`): ``log_final_var`` is its
    second moment about the final dispersion and ``node_z`` its nodes; otherwise ``log_final_var`` is minus the
    inverse curvature at the final dispersion (a normal posterior). With ``nodes`` the MAP is the grid
    posterior's mode; otherwise a search between the gene-wise estimate and the trend finds it. ``fast`` (start
    values) uses a coarser gene-wise search and the normal posterior mean of each log dispersion instead of the
    MAP.
    """
    n, g = y.shape
    p = moments.shape[-1]
    max_disp = max(10.0, float(n))
    opts: dict[str, Any] = {"max_disp": max_disp, "grid_step": 2.0 if fast else 1.0, "n_golden": 8 if fast else 14}

    def by_chunks(fn):
        return torch.cat([fn(slice(a, min(a + chunk, g))) for a in range(0, g, chunk)])

    with torch.no_grad():
        gw = by_chunks(lambda s: fit_log_dispersion(y[:, s], mu[:, s], moments, **opts))
        log_gw = gw.cpu().double().numpy()
        kind, coefs, trend = fit_trend(base_mean, np.exp(log_gw))
        log_trend = np.log(trend)
        nz = base_mean > 0
        pvar = estimated_prior_variance(np.exp(log_gw[nz]), trend[nz], n, p)
        sd = math.sqrt(pvar)
        if fast:  # start values: the normal posterior mean of each log dispersion, no search
            tau2 = sampling_variance(n, p)
            shrunk = (log_gw / tau2 + log_trend / pvar) / (1 / tau2 + 1 / pvar)
            log_final = np.where(log_gw > math.log(100 * MIN_DISP), shrunk, log_trend)
            var = np.full(g, 1.0 / (1 / tau2 + 1 / pvar))
            none = np.zeros(g, dtype=bool)
            return DispersionFit(
                log_gw, log_trend, log_final, log_final, var, none, kind, coefs, pvar, normal_weights()
            )
        weights = normal_weights()
        if heavy_tail:
            use = (log_gw >= math.log(100 * MIN_DISP)) & nz
            weights = tail_weights((log_gw - log_trend)[use], sd, n - p)
        pm = torch.as_tensor(log_trend, dtype=y.dtype, device=y.device)
        prior = LogDispersionPrior(pm, sd, weights)
        outlier = log_gw > log_trend + 2.0 * sd
        # DESeq2 keeps the gene-wise estimate of a gene more than two prior sds above the trend, and its posterior
        # is then the likelihood's alone; with the heavy tail the prior itself says, from the data, how many genes
        # lie how far above the trend, so every gene gets its MAP and its posterior under that prior
        keep_genewise = outlier & (not heavy_tail)
        out_t = torch.as_tensor(keep_genewise, device=y.device)
        if nodes:
            # the posterior of each log dispersion on a grid wide enough for both the gene-wise estimate and the
            # trend (where the prior and the likelihood disagree the posterior may have a mode at each), its
            # width from the curvature at the gene-wise estimate; the MAP is the grid posterior's mode
            gw_t = torch.as_tensor(log_gw, dtype=y.dtype, device=y.device)
            laplace_sd = by_chunks(lambda s: _laplace_variance(y, mu, moments, gw_t, prior, out_t, s)).sqrt()
            ends = torch.as_tensor(np.column_stack([log_gw, log_trend]), dtype=y.dtype, device=y.device)
            grid_lo = torch.clamp(ends.amin(1) - 6.0 * laplace_sd - 1.0, min=math.log(MIN_DISP))
            grid_hi = torch.clamp(ends.amax(1) + 6.0 * laplace_sd + 2.0, max=math.log(max_disp))
            centre = torch.where(out_t, gw_t, torch.full_like(gw_t, math.nan))

            def node_chunk(s):
                return posterior_nodes(
                    y[:, s],
                    mu[:, s],
                    moments,
                    prior,
                    s,
                    centre[s],
                    grid_lo[s],
                    grid_hi[s],
                    out_t[s],
                    return_centre=True,
                )

            post = by_chunks(node_chunk).cpu().double().numpy()
            node_z, var, log_map = post[:, :-2], post[:, -2], post[:, -1]
            log_final = np.where(keep_genewise, log_gw, log_map)
        else:  # the MAP by a search between the gene-wise estimate and the trend, a normal posterior at it
            lower = torch.as_tensor(np.minimum(log_gw, log_trend) - 0.5, dtype=y.dtype, device=y.device)
            upper = torch.as_tensor(np.maximum(log_gw, log_trend) + 0.5, dtype=y.dtype, device=y.device)

            def map_chunk(s):
                return fit_log_dispersion(
                    y[:, s], mu[:, s], moments, prior=prior, genes=s, bracket=(lower[s], upper[s]), **opts
                )

            log_map = by_chunks(map_chunk).cpu().double().numpy()
            log_final = np.where(keep_genewise, log_gw, log_map)
            final = torch.as_tensor(log_final, dtype=y.dtype, device=y.device)
            node_z = None
            var = by_chunks(lambda s: _laplace_variance(y, mu, moments, final, prior, out_t, s)).cpu().double().numpy()
    return DispersionFit(log_gw, log_trend, log_map, log_final, var, outlier, kind, coefs, pvar, weights, node_z)
