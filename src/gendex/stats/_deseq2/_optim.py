"""DESeq2's fallback for genes whose IRLS does not converge: L-BFGS-B on the log2 coefficients.

R (``fitNbinomGLMsOptim``) calls ``optim(method="L-BFGS-B", lower=-30, upper=30)`` without a gradient, so
``optim`` uses central finite differences with step ``1e-3``; the objective is the negative log posterior of
the log2 coefficients with a wide normal prior (variance ``1 / lambda``). Here scipy's L-BFGS-B gets the same
objective, the same finite-difference gradient, R's memory size (``m = 5``), ``factr = 1e7`` and
``maxit = 100``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln

LARGE = 30.0
_NDEPS = 1e-3


def nb_logpmf_np(y: np.ndarray, mu: np.ndarray, alpha: float) -> np.ndarray:
    """``log dnbinom(y, size=1/alpha, mu)`` (numpy)."""
    r = 1.0 / alpha
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = gammaln(y + r) - gammaln(r) - gammaln(y + 1.0) - r * np.log1p(mu / r)
        out = out + np.where(y > 0, y * (np.log(mu) - np.log(r + mu)), 0.0)
    return out


def _fd_grad(fun, p: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """R ``optim``'s numerical gradient for bounded problems (``ndeps = 1e-3``)."""
    grad = np.empty_like(p)
    for i in range(p.size):
        hi = p.copy()
        lo = p.copy()
        eps_hi = eps_lo = _NDEPS
        hi[i] = p[i] + _NDEPS
        if hi[i] > upper:
            hi[i] = upper
            eps_hi = upper - p[i]
        lo[i] = p[i] - _NDEPS
        if lo[i] < lower:
            lo[i] = lower
            eps_lo = p[i] - lower
        grad[i] = (fun(hi) - fun(lo)) / (eps_hi + eps_lo)
    return grad


def optim_row(
    y: np.ndarray,
    x: np.ndarray,
    nf: np.ndarray,
    alpha: float,
    start_log2: np.ndarray,
    lambda_log2: np.ndarray,
) -> tuple[np.ndarray, bool]:
    """Maximise the log posterior of one gene's log2 coefficients; returns (coefficients, converged)."""
    sd = np.sqrt(1.0 / lambda_log2)
    log_norm = -np.log(sd) - 0.5 * np.log(2.0 * np.pi)

    def objective(p: np.ndarray) -> float:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mu = nf * np.exp2(x @ p)
            ll = nb_logpmf_np(y, mu, alpha).sum()
        prior = np.sum(log_norm - 0.5 * (p / sd) ** 2)
        val = -(ll + prior)
        return float(val) if np.isfinite(val) else 1e300

    def fun_and_grad(p: np.ndarray) -> tuple[float, np.ndarray]:
        return objective(p), _fd_grad(objective, p, -LARGE, LARGE)

    start = np.clip(np.asarray(start_log2, dtype=np.float64), -LARGE, LARGE)
    res = minimize(
        fun_and_grad,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LARGE, LARGE)] * start.size,
        options={"maxcor": 5, "ftol": 1e7 * np.finfo(float).eps, "gtol": 0.0, "maxiter": 100},
    )
    return np.asarray(res.x, dtype=np.float64), bool(res.status == 0)
