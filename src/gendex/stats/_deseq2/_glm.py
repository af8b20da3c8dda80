"""The NB GLM of R DESeq2 (``fitNbinomGLMs``) for a batch of genes: IRLS with an L-BFGS-B fallback."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _kernels as K
from ._backend import get_backend, single_threaded_blas
from ._optim import nb_logpmf_np, optim_row

LOG2E = 1.0 / math.log(2.0)
#: R's default ridge on log2 coefficients (a N(0, 1e6) prior), converted in the kernels
RIDGE_LOG2 = 1e-6


class _Ctx:
    """Constants shared by the stages of one fit."""

    def __init__(self, design, sf, *, min_mu, min_disp, max_disp, beta_tol, device):
        self.be = get_backend(device)
        self.device = str(device)
        self.design = np.asarray(design, dtype=np.float64)
        self.n, self.p = self.design.shape
        self.ops = K.DesignOps(self.be, self.design)
        self.sf_np = np.asarray(sf, dtype=np.float64)
        self.sf = self.be.asarray(self.sf_np)
        self.min_mu = min_mu
        self.min_disp = min_disp
        self.max_disp = max(max_disp, self.n)
        self.beta_tol = beta_tol
        q, r = np.linalg.qr(self.design)
        self.q = self.be.asarray(q)
        self.qt = self.be.asarray(np.ascontiguousarray(q.T))
        self.pinv_t = self.be.asarray(np.ascontiguousarray(np.linalg.solve(r, q.T).T))  # (n, p)
        self.linear_mu = np.unique(self.design, axis=0).shape[0] == self.p
        self.intercept_only = self.p == 1 and bool(np.all(self.design == 1))
        self.ridge = np.full(self.p, RIDGE_LOG2 / math.log(2.0) ** 2)

    def t(self, a):
        return self.be.asarray(a)

    def np(self, a) -> np.ndarray:
        return self.be.to_numpy(a)


@dataclass
class _GLM:
    beta: Any  # (G, p) natural log
    cov: Any  # (P, G)
    hat: Any  # (G, n)
    mu: Any  # (G, n) unclamped
    loglik: Any
    conv: Any
    iters: Any


def fit_glm(y, alpha, ctx: _Ctx, *, maxit: int = 100, use_optim: bool = True) -> _GLM:
    """R's ``fitNbinomGLMs`` (without prior) for the genes of ``y`` (G, n): IRLS, then optim for failures."""
    be, ops = ctx.be, ctx.ops
    g = y.shape[0]
    p = ctx.p
    sf = ctx.sf
    normed = y / sf
    if ctx.intercept_only:
        bm = normed.mean(1)
        beta = be.log(bm)[:, None]
        mu = sf[None, :] * bm[:, None]
        w = 1.0 / (1.0 / mu + alpha[:, None])
        info = w.sum(1)
        cov = (1.0 / info)[None, :]
        hat = w / info[:, None]
        ll = K.nb_loglik(be, y, mu, alpha)
        return _GLM(beta, cov, hat, mu, ll, be.isfinite(ll) | True, be.zeros_int(g) + 1)
    beta0 = be.log(normed + 0.1) @ ctx.pinv_t
    bf = K.fit_beta(ops, y, sf, alpha, beta0, ctx.ridge, tol=ctx.beta_tol, maxit=maxit, min_mu=ctx.min_mu)
    beta = bf.beta
    mu = sf[None, :] * be.exp(beta @ ops.xt)
    conv = bf.iters < maxit
    stable = ~be.isnan(beta).any(1)
    varpos = be.stack([bf.cov[k] > 0 for k in ops.diag_k], 1).all(1)
    ll = bf.loglik_const + K.nb_loglik_mu(be, y, mu, alpha)
    cov = bf.cov
    bad = (~conv | ~stable | ~varpos) if use_optim else (~stable | ~varpos)
    rows = ctx.np(be.flatnonzero(bad))
    if rows.size:
        xn = ctx.design
        sfn = ctx.sf_np
        lam_log2 = np.full(p, RIDGE_LOG2)
        ridge_nat = np.diag(lam_log2 / math.log(2.0) ** 2)
        ridx = be.index(rows)
        beta_np = ctx.np(beta[ridx])
        beta0_np = ctx.np(beta0[ridx])
        stable_np = ctx.np(stable[ridx])
        y_np = ctx.np(y[ridx])
        alpha_np = ctx.np(alpha[ridx])
        new_beta = np.empty((rows.size, p))
        new_cov = np.empty((ops.P, rows.size))
        new_mu = np.empty((rows.size, ctx.n))
        new_ll = np.empty(rows.size)
        new_ok = np.empty(rows.size, dtype=bool)
        for k in range(rows.size):
            b_log2 = beta_np[k] * LOG2E
            start = b_log2 if (stable_np[k] and np.all(np.abs(b_log2) < 30)) else beta0_np[k]
            par, ok = optim_row(y_np[k], xn, sfn, float(alpha_np[k]), start, lam_log2)
            mu_row = sfn * np.exp2(xn @ par)
            mu_cl = np.maximum(mu_row, ctx.min_mu)
            w = 1.0 / (1.0 / mu_cl + alpha_np[k])
            info = (xn * w[:, None]).T @ xn
            inv = np.linalg.inv(info + ridge_nat)
            sw = inv @ info @ inv
            new_beta[k] = par * math.log(2.0)
            new_cov[:, k] = [sw[i, j] for i, j in ops.pairs]
            new_mu[k] = mu_row
            new_ll[k] = float(nb_logpmf_np(y_np[k], mu_cl, float(alpha_np[k])).sum())
            new_ok[k] = ok
        beta, cov, mu, ll, conv = be.copy(beta), be.copy(cov), be.copy(mu), be.copy(ll), be.copy(conv)
        beta[ridx] = be.asarray(new_beta)
        cov[:, ridx] = be.asarray(new_cov)
        mu[ridx] = be.asarray(new_mu)
        ll[ridx] = be.asarray(new_ll)
        conv[ridx] = conv[ridx] | (be.asarray(new_ok.astype(np.float64)) > 0.5)
    return _GLM(beta, cov, bf.hat, mu, ll, conv, bf.iters)


def glm_loglik(counts: np.ndarray, design: np.ndarray, size_factors: np.ndarray, dispersions: np.ndarray) -> np.ndarray:
    """Log-likelihood of the NB GLM of each gene at fixed dispersions, fitted by the batched engine."""
    n, g = counts.shape
    out = np.full(g, np.nan)
    ok = np.flatnonzero((counts.sum(axis=0) > 0) & np.isfinite(dispersions))
    ctx = _Ctx(design, size_factors, min_mu=0.5, min_disp=1e-8, max_disp=10.0, beta_tol=1e-8, device="cpu")
    chunk = max(1, 4_000_000 // n)
    with np.errstate(all="ignore"), single_threaded_blas():
        for start in range(0, ok.size, chunk):
            idx = ok[start : start + chunk]
            out[idx] = ctx.np(fit_glm(ctx.t(counts[:, idx].T), ctx.t(dispersions[idx]), ctx).loglik)
    return out
