"""Batched torch float64 kernels of DESeq2, vectorised over genes.

Layout: every per-gene/per-sample array here is ``(genes, samples)``; designs are ``(samples, p)``.
Each routine reproduces the corresponding step of R DESeq2 (``fitBeta``, ``fitDisp``, ``fitDispGrid``
in ``src/DESeq2.cpp``) with per-gene state, so convergence flags and iteration counts follow R's rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Tensor = torch.Tensor

#: DESeq2's bound on |beta| (natural log) in IRLS, and on log(alpha) in the line search
LARGE_BETA = 30.0
LOG_ALPHA_LO = -30.0
LOG_ALPHA_HI = 10.0


# ----------------------------------------------------------------------------------------------------------------
# small batched SPD linear algebra (p is small: explicit loops over p, vector ops over genes)
# ----------------------------------------------------------------------------------------------------------------
def cholesky(a: Tensor) -> Tensor:
    """Lower Cholesky factor of a batch of SPD matrices ``(G, p, p)``; NaN where not positive definite."""
    p = a.shape[-1]
    if p > 8:
        low, _ = torch.linalg.cholesky_ex(a)
        return low
    low = torch.zeros_like(a)
    for j in range(p):
        s = a[:, j, j] - (low[:, j, :j] ** 2).sum(-1)
        d = torch.sqrt(torch.where(s > 0, s, torch.full_like(s, math.nan)))
        low[:, j, j] = d
        if j + 1 < p:
            off = a[:, j + 1 :, j] - (low[:, j + 1 :, :j] * low[:, j : j + 1, :j]).sum(-1)
            low[:, j + 1 :, j] = off / d[:, None]
    return low


def chol_solve(low: Tensor, b: Tensor) -> Tensor:
    """Solve ``L L^T x = b`` for ``b`` of shape ``(G, p)`` or ``(G, p, k)``."""
    vec = b.ndim == 2
    if vec:
        b = b[:, :, None]
    p = low.shape[-1]
    if p > 8:
        x = torch.cholesky_solve(b, low)
        return x[:, :, 0] if vec else x
    y = torch.empty_like(b)
    for i in range(p):
        y[:, i] = (b[:, i] - (low[:, i, :i, None] * y[:, :i]).sum(1)) / low[:, i, i, None]
    x = torch.empty_like(b)
    for i in reversed(range(p)):
        x[:, i] = (y[:, i] - (low[:, i + 1 :, i, None] * x[:, i + 1 :]).sum(1)) / low[:, i, i, None]
    return x[:, :, 0] if vec else x


def spd_inverse(a: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse and log-determinant of a batch of SPD matrices."""
    low = cholesky(a)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)
    inv = chol_solve(low, eye.contiguous())
    logdet = 2.0 * torch.log(torch.diagonal(low, dim1=-2, dim2=-1)).sum(-1)
    return inv, logdet


def xtwx(x: Tensor, w: Tensor) -> Tensor:
    """``X^T diag(w_g) X`` for every gene: ``(G, p, p)``."""
    return torch.einsum("gn,np,nq->gpq", w, x, x)


def quad_diag(x: Tensor, m: Tensor) -> Tensor:
    """``x_j^T M_g x_j`` for every gene g and sample j: ``(G, n)``."""
    return torch.einsum("np,gpq,nq->gn", x, m, x)


# ----------------------------------------------------------------------------------------------------------------
# negative binomial log densities
# ----------------------------------------------------------------------------------------------------------------
def nb_logpmf(y: Tensor, mu: Tensor, alpha: Tensor) -> Tensor:
    """``log dnbinom(y, size=1/alpha, mu=mu)`` elementwise; ``alpha`` broadcasts over samples."""
    r = 1.0 / alpha
    lg = torch.lgamma(y + r) - torch.lgamma(r) - torch.lgamma(y + 1.0)
    # r*log(r/(r+mu)) = -r*log1p(mu/r) and y*log(mu/(r+mu)) = y*(log(mu) - log(r+mu))
    out = lg - r * torch.log1p(mu / r) + torch.where(y > 0, y * (torch.log(mu) - torch.log(r + mu)), 0.0)
    return out


def nb_loglik(y: Tensor, mu: Tensor, alpha: Tensor) -> Tensor:
    """Per-gene NB log-likelihood ``(G,)`` for ``y, mu`` of shape ``(G, n)`` and ``alpha`` ``(G,)``."""
    return nb_logpmf(y, mu, alpha[:, None]).sum(1)


# ----------------------------------------------------------------------------------------------------------------
# IRLS for the NB GLM (R: fitBeta, QR variant; solved here through the equivalent ridge normal equations)
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class BetaFit:
    """Output of :func:`fit_beta`; natural-log coefficients."""

    beta: Tensor  # (G, p)
    beta_cov: Tensor  # (G, p, p) sandwich covariance (X'WX + R)^-1 X'WX (X'WX + R)^-1
    hat: Tensor  # (G, n)
    iters: Tensor  # (G,) int
    mu_clamped: Tensor  # (G, n) mu used for the weights (clamped at min_mu)


def fit_beta(
    y: Tensor,
    x: Tensor,
    nf: Tensor,
    alpha: Tensor,
    beta0: Tensor,
    ridge: Tensor,
    *,
    tol: float = 1e-8,
    maxit: int = 100,
    min_mu: float = 0.5,
) -> BetaFit:
    """IRLS of DESeq2's ``fitBeta`` for every gene at once.

    ``y`` (G, n) counts, ``x`` (n, p) design, ``nf`` (n,) or (G, n) normalisation factors, ``alpha`` (G,)
    dispersions, ``beta0`` (G, p) start, ``ridge`` (p,) ridge penalty on the natural-log scale. A gene stops
    when ``|dev - dev_old| / (|dev| + 0.1) < tol`` (not at the first iteration); a coefficient above 30 in
    absolute value or a NaN deviance marks it as not converged (``iters == maxit``), exactly as in R.
    """
    g, n = y.shape
    nf = nf.expand(g, n) if nf.ndim == 1 else nf
    beta = beta0.clone()
    mu = torch.clamp(nf * torch.exp(beta @ x.T), min=min_mu)
    iters = torch.zeros(g, dtype=torch.int64, device=y.device)
    dev_old = torch.zeros(g, dtype=y.dtype, device=y.device)
    active = torch.arange(g, device=y.device)
    rdiag = torch.diag(ridge)
    for t in range(maxit):
        if active.numel() == 0:
            break
        ya, nfa, mua, aa = y[active], nf[active], mu[active], alpha[active]
        iters[active] += 1
        w = mua / (1.0 + aa[:, None] * mua)
        z = torch.log(mua / nfa) + (ya - mua) / mua
        a_mat = xtwx(x, w) + rdiag
        rhs = (w * z) @ x
        bnew = chol_solve(cholesky(a_mat), rhs)
        big = (bnew.abs() > LARGE_BETA).any(1) | torch.isnan(bnew).any(1)
        beta[active] = bnew
        # genes that blew up keep their previous mu, as in R (break before the mu update)
        mu_new = torch.clamp(nfa * torch.exp(bnew @ x.T), min=min_mu)
        mu_new = torch.where(big[:, None], mua, mu_new)
        mu[active] = mu_new
        dev = -2.0 * nb_loglik(ya, mu_new, aa)
        conv = (dev - dev_old[active]).abs() / (dev.abs() + 0.1)
        bad = big | torch.isnan(conv)
        iters[active[bad]] = maxit
        done = bad | ((conv < tol) if t > 0 else torch.zeros_like(bad))
        dev_old[active] = dev
        active = active[~done]
    w = mu / (1.0 + alpha[:, None] * mu)
    info = xtwx(x, w)
    inv, _ = spd_inverse(info + rdiag)
    hat = w * quad_diag(x, inv)
    cov = inv @ info @ inv
    return BetaFit(beta=beta, beta_cov=cov, hat=hat, iters=iters, mu_clamped=mu)


def sandwich_cov(
    y: Tensor, x: Tensor, nf: Tensor, alpha: Tensor, beta: Tensor, ridge: Tensor, min_mu: float
) -> tuple[Tensor, Tensor]:
    """Covariance and hat diagonals at fixed ``beta`` (R's ``fitBeta`` with ``maxit = 0``)."""
    g, n = y.shape
    nf = nf.expand(g, n) if nf.ndim == 1 else nf
    mu = torch.clamp(nf * torch.exp(beta @ x.T), min=min_mu)
    w = mu / (1.0 + alpha[:, None] * mu)
    info = xtwx(x, w)
    inv, _ = spd_inverse(info + torch.diag(ridge))
    return inv @ info @ inv, w * quad_diag(x, inv)


# ----------------------------------------------------------------------------------------------------------------
# dispersion: log posterior of log(alpha) with the Cox-Reid term, its derivative, line search, grid
# ----------------------------------------------------------------------------------------------------------------
def log_posterior(a: Tensor, y: Tensor, mu: Tensor, x: Tensor, prior_mean: Tensor | None, prior_var: float) -> Tensor:
    """R's ``log_posterior`` (``use_prior`` when ``prior_mean`` is given), for one ``a = log(alpha)`` per gene."""
    alpha = torch.exp(a)
    r = 1.0 / alpha
    ll = (
        torch.lgamma(y + r[:, None])
        - torch.lgamma(r)[:, None]
        - y * torch.log(mu + r[:, None])
        - r[:, None] * torch.log1p(mu * alpha[:, None])
    ).sum(1)
    w = 1.0 / (1.0 / mu + alpha[:, None])
    low = cholesky(xtwx(x, w))
    cr = -torch.log(torch.diagonal(low, dim1=-2, dim2=-1)).sum(-1)  # -0.5 * log det
    out = ll + cr
    if prior_mean is not None:
        out = out - 0.5 * (a - prior_mean) ** 2 / prior_var
    return out


def dlog_posterior(a: Tensor, y: Tensor, mu: Tensor, x: Tensor, prior_mean: Tensor | None, prior_var: float) -> Tensor:
    """Derivative of :func:`log_posterior` with respect to ``log(alpha)`` (R's ``dlog_posterior``)."""
    alpha = torch.exp(a)
    r = 1.0 / alpha
    ma = mu * alpha[:, None]
    ll = (
        torch.digamma(r)[:, None]
        + torch.log1p(ma)
        - ma / (1.0 + ma)
        - torch.digamma(y + r[:, None])
        + y / (mu + r[:, None])
    ).sum(1) / alpha**2
    w = 1.0 / (1.0 / mu + alpha[:, None])
    inv, _ = spd_inverse(xtwx(x, w))
    # d log det(B) / d alpha = tr(B^-1 X' dW X), dW = -w^2
    cr = 0.5 * (w**2 * quad_diag(x, inv)).sum(1)
    out = (ll + cr) * alpha
    if prior_mean is not None:
        out = out - (a - prior_mean) / prior_var
    return out


@dataclass
class DispFit:
    """Output of :func:`fit_disp` (R's ``fitDisp``)."""

    log_alpha: Tensor
    iters: Tensor
    initial_lp: Tensor
    last_lp: Tensor


def fit_disp(
    y: Tensor,
    x: Tensor,
    mu: Tensor,
    log_alpha0: Tensor,
    *,
    prior_mean: Tensor | None,
    prior_var: float,
    min_log_alpha: float,
    kappa_0: float = 1.0,
    tol: float = 1e-6,
    maxit: int = 100,
) -> DispFit:
    """Backtracking (Armijo) line search on log(alpha) for every gene, as R's ``fitDisp``."""
    g = y.shape[0]
    eps = 1e-4
    a = log_alpha0.clone()
    lp = log_posterior(a, y, mu, x, prior_mean, prior_var)
    dlp = dlog_posterior(a, y, mu, x, prior_mean, prior_var)
    initial_lp = lp.clone()
    kappa = torch.full_like(a, kappa_0)
    iters = torch.zeros(g, dtype=torch.int64, device=y.device)
    n_accept = torch.zeros(g, dtype=torch.int64, device=y.device)
    active = torch.arange(g, device=y.device)
    for _ in range(maxit):
        if active.numel() == 0:
            break
        aa, la, da, ka = a[active], lp[active], dlp[active], kappa[active]
        pm = None if prior_mean is None else prior_mean[active]
        iters[active] += 1
        prop = aa + ka * da
        ka = torch.where(prop < LOG_ALPHA_LO, (LOG_ALPHA_LO - aa) / da, ka)
        ka = torch.where(prop > LOG_ALPHA_HI, (LOG_ALPHA_HI - aa) / da, ka)
        anew = aa + ka * da
        lpnew = log_posterior(anew, y[active], mu[active], x, pm, prior_var)
        accept = -lpnew <= -la - ka * eps * da**2
        change = lpnew - la
        small = accept & (change < tol)
        gone = accept & ~small & (anew < min_log_alpha)
        cont = accept & ~small & ~gone
        # accepted moves update a; lp is updated unless log(alpha) went below its floor (R breaks first)
        a[active] = torch.where(accept, anew, aa)
        lp[active] = torch.where(small | cont, lpnew, la)
        n_acc = n_accept[active] + accept.to(torch.int64)
        n_accept[active] = n_acc
        knew = torch.where(accept, torch.clamp(ka * 1.1, max=kappa_0), ka / 2.0)
        knew = torch.where(accept & (n_acc % 5 == 0), knew / 2.0, knew)
        kappa[active] = knew
        idx_cont = active[cont]
        if idx_cont.numel():
            pmc = None if prior_mean is None else prior_mean[idx_cont]
            dlp[idx_cont] = dlog_posterior(a[idx_cont], y[idx_cont], mu[idx_cont], x, pmc, prior_var)
        active = active[~(small | gone)]
    return DispFit(log_alpha=a, iters=iters, initial_lp=initial_lp, last_lp=lp)


def fit_disp_grid(
    y: Tensor,
    x: Tensor,
    mu: Tensor,
    *,
    prior_mean: Tensor | None,
    prior_var: float,
    max_disp: float,
    n_grid: int = 20,
) -> Tensor:
    """R's ``fitDispGrid``: coarse then fine grid of the log posterior; returns alpha ``(G,)``."""
    g = y.shape[0]
    if g == 0:
        return torch.empty(0, dtype=y.dtype, device=y.device)
    grid = torch.linspace(math.log(1e-8), math.log(max_disp), n_grid, dtype=y.dtype, device=y.device)
    delta = grid[1] - grid[0]

    def best(points: Tensor) -> Tensor:  # points (G, k) -> argmax point per gene
        k = points.shape[1]
        yy = y.repeat_interleave(k, 0)
        mm = mu.repeat_interleave(k, 0)
        pm = None if prior_mean is None else prior_mean.repeat_interleave(k)
        lp = log_posterior(points.reshape(-1), yy, mm, x, pm, prior_var).reshape(g, k)
        lp = torch.nan_to_num(lp, nan=-math.inf)
        return points.gather(1, lp.argmax(1, keepdim=True))[:, 0]

    a_hat = best(grid.expand(g, n_grid))
    offsets = torch.linspace(-1.0, 1.0, n_grid, dtype=y.dtype, device=y.device) * delta
    fine = a_hat[:, None] + offsets[None, :]
    return torch.exp(best(fine))
