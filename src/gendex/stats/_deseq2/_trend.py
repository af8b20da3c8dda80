"""Dispersion trend and prior: ``estimateDispersionsFit`` and ``estimateDispersionsPriorVar`` of R DESeq2."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy.special import polygamma

from ._locfit import locfit_trend
from ._prior_var import kl_prior_var

logger = logging.getLogger(__name__)


class TrendFitError(RuntimeError):
    """The parametric dispersion trend could not be fitted (R then switches to a local fit)."""


def _gamma_identity_glm(
    y: np.ndarray, x: np.ndarray, start: np.ndarray, *, maxit: int = 25, epsilon: float = 1e-8
) -> tuple[np.ndarray, bool]:
    """R's ``glm.fit`` for ``family=Gamma(link="identity")`` started at ``start``."""

    def deviance(mu: np.ndarray) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(y == 0, 1.0, y / mu)
            return float(np.sum(-2.0 * (np.log(ratio) - (y - mu) / mu)))

    def valid(mu: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    coef = np.asarray(start, dtype=np.float64).copy()
    coefold = coef.copy()
    eta = x @ coef
    mu = eta
    if not valid(mu):
        raise TrendFitError("cannot find valid starting values for the gamma GLM")
    devold = deviance(mu)
    conv = False
    for _ in range(maxit):
        z = eta + (y - mu)
        w = 1.0 / mu
        coef, *_ = np.linalg.lstsq(x * w[:, None], z * w, rcond=None)
        eta = x @ coef
        mu = eta
        dev = deviance(mu)
        halvings = 0
        while not (np.isfinite(dev) and valid(mu)):
            halvings += 1
            if halvings > maxit:
                raise TrendFitError("gamma GLM: cannot correct the step size")
            coef = (coef + coefold) / 2.0
            eta = x @ coef
            mu = eta
            dev = deviance(mu)
        if abs(dev - devold) / (abs(dev) + 0.1) < epsilon:
            conv = True
            break
        devold = dev
        coefold = coef.copy()
    return coef, conv


def parametric_trend(means: np.ndarray, disps: np.ndarray) -> np.ndarray:
    """R's ``parametricDispersionFit``: ``alpha = a0 + a1 / mean`` by an iterated gamma GLM.

    Genes whose gene-wise estimate is more than 15 times, or less than 1e-4 times, the current trend are left
    out at each round. Raises :class:`TrendFitError` where R's fit fails.
    """
    coefs = np.array([0.1, 1.0])
    it = 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        while True:
            resid = disps / (coefs[0] + coefs[1] / means)
            good = (resid > 1e-4) & (resid < 15)
            if good.sum() < 2:
                raise TrendFitError("too few genes near the dispersion trend")
            x = np.column_stack([np.ones(good.sum()), 1.0 / means[good]])
            new, conv = _gamma_identity_glm(disps[good], x, coefs)
            old = coefs
            coefs = new
            if not np.all(coefs > 0):
                raise TrendFitError("parametric dispersion fit failed (a coefficient is not positive)")
            if np.sum(np.log(coefs / old) ** 2) < 1e-6 and conv:
                break
            it += 1
            if it > 10:
                raise TrendFitError("parametric dispersion fit did not converge")
    return coefs


def local_trend(means: np.ndarray, disps: np.ndarray, min_disp: float):
    """R DESeq2's local trend ``locfit(log(disp) ~ log(mean), weights = mean)`` (see :mod:`._locfit`)."""
    return locfit_trend(means, disps, min_disp)


def mad(x: np.ndarray) -> float:
    """R's ``mad`` (constant 1.4826, median centre)."""
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def prior_variance(
    gene_disp: np.ndarray, fitted: np.ndarray, n_samples: int, n_coefs: int, min_disp: float, *, floor: float = 0.25
) -> tuple[float, float]:
    """``(dispPriorVar, varLogDispEsts)`` of R's ``estimateDispersionsPriorVar`` (R's lower bound: ``floor``)."""
    above = gene_disp >= min_disp * 100
    if not above.any():
        warnings.warn(
            f"all genes have dispersion estimates < {min_disp * 10}; the prior variance is set to 0.25",
            stacklevel=3,
        )
        return 0.25, np.nan
    with np.errstate(divide="ignore"):
        resid = np.log(gene_disp) - np.log(fitted)
    var_log = mad(resid[above]) ** 2
    m, p = n_samples, n_coefs
    if (m - p) <= 3 and m > p:
        return kl_prior_var(resid[above], m - p, floor=floor), var_log
    if m > p:
        return float(max(var_log - polygamma(1, (m - p) / 2.0), floor)), var_log
    return var_log, var_log
