"""Adaptive shrinkage (Stephens 2017, ``ashr``): an empirical-Bayes prior on effects, estimated from all genes.

The prior is a mixture of zero-centred normals on a grid of standard deviations, including a point mass at zero;
its weights maximise the marginal likelihood of the estimates ``betahat ~ N(beta, se^2)`` (EM, with ashr's
``nullweight`` penalty favouring the null component). Each gene's posterior is then a mixture of normals, which
gives posterior means and sds, tail probabilities, local false sign rates and credible intervals in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr
from scipy.stats import norm


@dataclass
class AshPosterior:
    """Posterior of each effect: a mixture over the prior's components (arrays ``(n,)`` or ``(n, K)``)."""

    weights: NDArray[np.float64]  # (n, K) posterior component probabilities
    means: NDArray[np.float64]  # (n, K)
    sds: NDArray[np.float64]  # (n, K); 0 for the point mass
    prior_weights: NDArray[np.float64]  # (K,)
    prior_sds: NDArray[np.float64]  # (K,)

    @property
    def mean(self) -> NDArray[np.float64]:
        """Posterior means."""
        return (self.weights * self.means).sum(1)

    @property
    def sd(self) -> NDArray[np.float64]:
        """Posterior standard deviations."""
        second = (self.weights * (self.sds**2 + self.means**2)).sum(1)
        return np.sqrt(np.maximum(second - self.mean**2, 0.0))

    def cdf(self, x: ArrayLike) -> NDArray[np.float64]:
        """``P(beta <= x)`` per effect (``x`` scalar or ``(n,)``)."""
        x = np.broadcast_to(np.asarray(x, dtype=np.float64), self.weights.shape[:1])[:, None]
        point = self.sds == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (x - self.means) / np.where(point, 1.0, self.sds)
        comp = np.where(point, (x >= self.means).astype(float), ndtr(z))
        return (self.weights * comp).sum(1)

    def prob_greater(self, x: ArrayLike) -> NDArray[np.float64]:
        """``P(beta > x)`` per effect (strict, so the point mass at 0 is excluded for ``x = 0``)."""
        return 1.0 - self.cdf(x)

    def prob_less(self, x: ArrayLike) -> NDArray[np.float64]:
        """``P(beta < x)`` per effect (``x`` scalar or ``(n,)``)."""
        x = np.broadcast_to(np.asarray(x, dtype=np.float64), self.weights.shape[:1])[:, None]
        point = self.sds == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (x - self.means) / np.where(point, 1.0, self.sds)
        comp = np.where(point, (x > self.means).astype(float), ndtr(z))
        return (self.weights * comp).sum(1)

    def lfsr(self) -> NDArray[np.float64]:
        """Local false sign rate ``min(P(beta >= 0), P(beta <= 0))``."""
        return np.minimum(1.0 - self.prob_less(0.0), self.cdf(0.0))

    def quantile(self, q: float, n_iter: int = 60) -> NDArray[np.float64]:
        """The ``q`` quantile per effect (bisection on the mixture cdf)."""
        spread = np.where(self.sds > 0, 10.0 * self.sds, 0.0)
        lo = np.minimum((self.means - spread).min(1), 0.0) - 1e-9
        hi = np.maximum((self.means + spread).max(1), 0.0) + 1e-9
        for _ in range(n_iter):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < q
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        at_zero = (self.prob_less(0.0) < q) & (self.cdf(0.0) >= q)  # the quantile sits on the point mass
        return np.where(at_zero, 0.0, hi)


def _grid(betahat: NDArray, se: NDArray, mult: float = np.sqrt(2.0)) -> NDArray[np.float64]:
    """Ashr's default grid of prior sds: from ``min(se) / 10`` to ``2 sqrt(max(betahat^2 - se^2))``, plus 0."""
    smin = float(np.min(se)) / 10.0
    excess = float(np.max(betahat**2 - se**2))
    smax = 2.0 * np.sqrt(excess) if excess > 0 else 8.0 * smin
    smax = max(smax, 8.0 * smin)
    n = int(np.ceil(np.log(smax / smin) / np.log(mult))) + 1
    return np.concatenate([[0.0], smax / mult ** np.arange(n - 1, -1, -1)])


def ash(
    betahat: ArrayLike,
    se: ArrayLike,
    *,
    prior_sds: ArrayLike | None = None,
    null_weight: float = 10.0,
    max_iter: int = 1000,
    tol: float = 1e-8,
) -> AshPosterior:
    """Fit the adaptive-shrinkage prior to estimates and standard errors and return every effect's posterior.

    Parameters
    ----------
    betahat
        Effect estimates (finite).
    se
        Their standard errors (finite, positive).
    prior_sds
        Grid of prior component sds (0 = point mass); default: ashr's automatic grid.
    null_weight
        Dirichlet penalty on the null component's weight (ashr's ``nullweight``; 1 = no penalty). Values above 1
        make the fit conservative.
    max_iter, tol
        EM iterations and tolerance on the weights.

    Returns
    -------
    The :class:`AshPosterior` of every effect.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import ash
    >>> rng = np.random.default_rng(0)
    >>> beta = np.where(rng.random(500) < 0.2, rng.normal(0, 2, 500), 0.0)
    >>> post = ash(beta + rng.normal(0, 0.5, 500), np.full(500, 0.5))
    >>> bool(post.prior_weights[0] > 0.5)
    True
    """
    b = np.asarray(betahat, dtype=np.float64)
    s = np.asarray(se, dtype=np.float64)
    if b.shape != s.shape or b.ndim != 1:
        raise ValueError("`betahat` and `se` must be 1-d arrays of the same length")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("`betahat` must be finite and `se` finite and positive")
    sds = _grid(b, s) if prior_sds is None else np.asarray(prior_sds, dtype=np.float64)
    total_sd = np.sqrt(s[:, None] ** 2 + sds[None, :] ** 2)
    loglik = norm.logpdf(b[:, None], scale=total_sd)
    lik = np.exp(loglik - loglik.max(1, keepdims=True))
    penalty = np.ones(len(sds))
    penalty[sds == 0] = null_weight
    pi = np.full(len(sds), 1.0 / len(sds))
    for _ in range(max_iter):
        w = lik * pi
        w /= w.sum(1, keepdims=True)
        new = w.sum(0) + penalty - 1.0
        new = np.maximum(new, 0.0) / np.maximum(new, 0.0).sum()
        done = np.max(np.abs(new - pi)) < tol
        pi = new
        if done:
            break
    w = lik * pi
    w /= w.sum(1, keepdims=True)
    shrink = sds[None, :] ** 2 / total_sd**2
    means = shrink * b[:, None]
    post_sds = np.sqrt(shrink) * s[:, None]
    return AshPosterior(w, means, post_sds, pi, sds)


def posterior_fdr(prob_null: ArrayLike) -> NDArray[np.float64]:
    """Posterior expected FDR (q-value) of calling each effect and every effect ranked above it.

    Effects are ranked by ascending ``prob_null``; the q-value of the effect at rank ``k`` is the mean of the
    ``k`` smallest ``prob_null``. NaN stays NaN.
    """
    p = np.asarray(prob_null, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    order = np.argsort(p[ok], kind="stable")
    q = np.cumsum(p[ok][order]) / np.arange(1, ok.sum() + 1)
    res = np.empty(ok.sum())
    res[order] = q
    out[ok] = res
    return out
