"""DESeq2-style empirical-Bayes dispersions given fitted means (torch kernels; no AnnData).

The NB-VAE decoder is a per-gene GLM on shared features ``x_i = [1, z_i, c_i]``. Given the fitted means, this
module estimates gene-wise dispersions by maximising the Cox-Reid adjusted profile likelihood (as DESeq2), fits
DESeq2's parametric mean-dispersion trend ``alpha(mu) = a0 + a1 / mu``, estimates the prior variance of the log
dispersions around it, and computes the maximum a-posteriori dispersions and their posterior variance on the log
scale. Everything works on the natural log of the dispersion ``alpha`` (``Var = mu + alpha mu^2``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.special import polygamma

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
    w = mu / (1.0 + torch.exp(log_alpha) * mu)
    p = moments.shape[-1]
    info = (w.T @ moments.reshape(moments.shape[0], p * p)).reshape(-1, p, p)
    chol, bad = torch.linalg.cholesky_ex(info)
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * torch.where(bad == 0, logdet, torch.zeros_like(logdet))


def _nb_loglik_alpha(y: torch.Tensor, mu: torch.Tensor, log_alpha: torch.Tensor) -> torch.Tensor:
    """The part of :func:`nb_loglik` that depends on ``alpha`` (``mu`` fixed), summed over samples; cheaper."""
    r = torch.exp(-log_alpha)
    n = y.shape[0]
    per_sample = torch.lgamma(y + r) - (r + y) * torch.log(r + mu)
    return per_sample.sum(0) + n * (r * torch.log(r) - torch.lgamma(r))


def _objective(y, mu, moments, log_alpha, prior_mean, prior_var):
    obj = _nb_loglik_alpha(y, mu, log_alpha)
    if moments is not None:
        obj = obj + cox_reid(mu, log_alpha, moments)
    if prior_mean is not None:
        obj = obj - 0.5 * (log_alpha - prior_mean) ** 2 / prior_var
    return obj


def _argmax_on_grid(y, mu, moments, centre, offsets, prior_mean, prior_var, lo, hi):
    best_val = best_x = None
    for off in offsets:
        x = torch.clamp(centre + off, lo, hi)
        val = _objective(y, mu, moments, x, prior_mean, prior_var)
        if best_val is None:
            best_val, best_x = val, x
        else:
            better = val > best_val
            best_val = torch.where(better, val, best_val)
            best_x = torch.where(better, x, best_x)
    return best_x


def fit_log_dispersion(
    y: torch.Tensor,
    mu: torch.Tensor,
    moments: torch.Tensor | None,
    *,
    prior_mean: torch.Tensor | None = None,
    prior_var: float | None = None,
    max_disp: float = 10.0,
    n_golden: int = 16,
) -> torch.Tensor:
    """Maximise the (Cox-Reid adjusted, optionally penalised) NB likelihood in ``log alpha`` for every gene.

    A grid with step 1 over ``[log 1e-8, log max_disp]`` brackets the maximum, then ``n_golden`` golden-section
    steps within one grid step on either side refine it (to about 0.001); robust for every gene at once, unlike
    Newton steps from one start.
    """
    lo, hi = math.log(MIN_DISP), math.log(max_disp)
    g = y.shape[1]
    start = torch.full((g,), lo, dtype=y.dtype, device=y.device)
    coarse = torch.arange(0.0, hi - lo + 1.0, 1.0, dtype=y.dtype).tolist()
    x = _argmax_on_grid(y, mu, moments, start, coarse, prior_mean, prior_var, lo, hi)
    a, b = torch.clamp(x - 1.0, lo, hi), torch.clamp(x + 1.0, lo, hi)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc = _objective(y, mu, moments, c, prior_mean, prior_var)
    fd = _objective(y, mu, moments, d, prior_mean, prior_var)
    for _ in range(n_golden):
        left = fc > fd  # the maximum lies in [a, d]
        b = torch.where(left, d, b)
        a = torch.where(left, a, c)
        new_c, new_d = b - ratio * (b - a), a + ratio * (b - a)
        # reuse the surviving point, evaluate the new one
        c_next = torch.where(left, new_c, d)
        d_next = torch.where(left, c, new_d)
        f_new = _objective(y, mu, moments, torch.where(left, new_c, new_d), prior_mean, prior_var)
        fc, fd = torch.where(left, f_new, fd), torch.where(left, fc, f_new)
        c, d = c_next, d_next
    best = torch.where(fc > fd, c, d)
    # keep the grid point if it is better (flat likelihoods at the boundary)
    f_best = torch.maximum(fc, fd)
    f_x = _objective(y, mu, moments, x, prior_mean, prior_var)
    return torch.where(f_x > f_best, x, best)


def log_dispersion_variance(y, mu, moments, log_alpha, *, prior_mean=None, prior_var=None, h: float = 0.05):
    """Posterior variance of ``log alpha``: minus the inverse curvature of the objective (finite differences)."""
    f0 = _objective(y, mu, moments, log_alpha, prior_mean, prior_var)
    fm = _objective(y, mu, moments, log_alpha - h, prior_mean, prior_var)
    fp = _objective(y, mu, moments, log_alpha + h, prior_mean, prior_var)
    curv = (fp - 2 * f0 + fm) / h**2
    var = torch.where(curv < 0, -1.0 / curv, torch.full_like(curv, 4.0))
    return torch.clamp(var, 1e-4, 4.0)


def fit_trend(base_mean: np.ndarray, disp: np.ndarray) -> tuple[str, np.ndarray]:
    """DESeq2's parametric trend ``a0 + a1 / mean`` (gamma GLM, identity link, iterative outlier removal).

    Falls back to DESeq2's ``"mean"`` fit (a constant, the trimmed mean of the gene-wise dispersions) when the
    parametric fit does not converge or gives a non-positive coefficient. Returns ``(kind, coefficients)``.
    """
    use = (disp > 100 * MIN_DISP) & (base_mean > 0) & np.isfinite(disp)
    m, d = base_mean[use], disp[use]
    coefs = np.array([0.1, 1.0])
    ok = m.size >= 3
    for _ in range(12):
        if not ok:
            break
        resid = d / (coefs[0] + coefs[1] / m)
        good = (resid > 1e-4) & (resid < 15)
        xmat = np.column_stack([np.ones(good.sum()), 1.0 / m[good]])
        new = coefs.copy()
        for _ in range(25):  # IRLS for the gamma GLM with identity link: weights 1 / fitted^2
            fitted = np.maximum(xmat @ new, 1e-12)
            w = 1.0 / fitted**2
            xtw = xmat.T * w
            step = np.linalg.solve(xtw @ xmat, xtw @ d[good])
            if np.allclose(step, new, rtol=1e-8, atol=1e-12):
                new = step
                break
            new = step
        if not np.all(new > 0):
            ok = False
            break
        converged = np.sum(np.log(new / coefs) ** 2) < 1e-6
        coefs = new
        if converged:
            return "parametric", coefs
    sel = d[d > 10 * MIN_DISP] if np.any(d > 10 * MIN_DISP) else disp[np.isfinite(disp)]
    sel = np.sort(sel)
    trim = int(np.floor(0.001 * sel.size))
    mean_disp = float(sel[trim : sel.size - trim].mean()) if sel.size else 0.1
    logger.info("parametric dispersion trend did not converge; using the mean dispersion %.4g", mean_disp)
    return "mean", np.array([mean_disp, 0.0])


def trend_values(coefs: np.ndarray, base_mean: np.ndarray) -> np.ndarray:
    """The trend ``a0 + a1 / mean`` at each gene (genes with mean 0 get the asymptote)."""
    with np.errstate(divide="ignore"):
        inv = np.where(base_mean > 0, 1.0 / np.maximum(base_mean, 1e-300), 0.0)
    return np.maximum(coefs[0] + coefs[1] * inv, MIN_DISP)


def prior_variance(log_gw: np.ndarray, log_trend: np.ndarray, n_samples: int, n_coef: int) -> float:
    """DESeq2's prior variance of the log dispersions: ``max(MAD^2 - trigamma((m - p) / 2), 0.25)``."""
    use = log_gw >= math.log(100 * MIN_DISP)
    resid = (log_gw - log_trend)[use]
    if resid.size == 0:
        return 0.25
    mad = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    df = max(n_samples - n_coef, 1)
    expected = float(polygamma(1, df / 2.0))
    return float(max(mad**2 - expected, 0.25))


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

    def to_frame(self, base_mean: np.ndarray, index) -> pd.DataFrame:
        """Genes x ``baseMean, genewise, trend, MAP, dispersion, outlier, log_dispersion_var``."""
        return pd.DataFrame(
            {
                "baseMean": base_mean,
                "genewise": np.exp(self.log_genewise),
                "trend": np.exp(self.log_trend),
                "MAP": np.exp(self.log_map),
                "dispersion": np.exp(self.log_final),
                "outlier": self.outlier,
                "log_dispersion_var": self.log_final_var,
            },
            index=pd.Index(index).copy(),
        )


def fit_dispersions(
    y: torch.Tensor, mu: torch.Tensor, moments: torch.Tensor, base_mean: np.ndarray, *, chunk: int = 4096
) -> DispersionFit:
    """The whole empirical-Bayes procedure: gene-wise -> trend -> prior variance -> MAP (+ outliers).

    ``y`` and ``mu`` are ``(n, G)`` counts and fitted means, ``moments`` ``(n, p, p)`` the second moments of the
    design features, ``base_mean`` the mean normalised counts ``(G,)``.
    """
    n, g = y.shape
    p = moments.shape[-1]
    max_disp = max(10.0, float(n))

    def by_chunks(fn):
        return torch.cat([fn(slice(a, min(a + chunk, g))) for a in range(0, g, chunk)])

    with torch.no_grad():
        gw = by_chunks(lambda s: fit_log_dispersion(y[:, s], mu[:, s], moments, max_disp=max_disp))
        log_gw = gw.cpu().double().numpy()
        kind, coefs = fit_trend(base_mean, np.exp(log_gw))
        log_trend = np.log(trend_values(coefs, base_mean))
        pvar = prior_variance(log_gw, log_trend, n, p)
        pm = torch.as_tensor(log_trend, dtype=y.dtype, device=y.device)
        map_ = by_chunks(
            lambda s: fit_log_dispersion(
                y[:, s], mu[:, s], moments, prior_mean=pm[s], prior_var=pvar, max_disp=max_disp
            )
        )
        log_map = map_.cpu().double().numpy()
        outlier = log_gw > log_trend + 2.0 * math.sqrt(pvar)
        log_final = np.where(outlier, log_gw, log_map)
        final = torch.as_tensor(log_final, dtype=y.dtype, device=y.device)
        out_t = torch.as_tensor(outlier, device=y.device)

        def var_chunk(s):
            with_prior = log_dispersion_variance(y[:, s], mu[:, s], moments, final[s], prior_mean=pm[s], prior_var=pvar)
            without = log_dispersion_variance(y[:, s], mu[:, s], moments, final[s])
            return torch.where(out_t[s], without, with_prior)

        var = by_chunks(var_chunk).cpu().double().numpy()
    return DispersionFit(log_gw, log_trend, log_map, log_final, var, outlier, kind, coefs, pvar)
