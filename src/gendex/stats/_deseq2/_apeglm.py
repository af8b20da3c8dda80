"""apeGLM's MAP (PyDESeq2's ``lfc_shrink`` objective) for all genes at once: batched damped Newton."""

from __future__ import annotations

import numpy as np

from ._backend import single_threaded_blas


def apeglm_map(
    x: np.ndarray,
    counts: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    s0: float,
    s: float,
    k: int,
    *,
    maxit: int = 200,
    tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched damped-Newton MAP of PyDESeq2's apeGLM objective (NB likelihood, Cauchy prior on coefficient ``k``).

    Returns ``(beta (G, p), inverse Hessians (G, p, p), converged (G,))``; the Hessian is the exact one of the
    objective (normal prior ``1/s0^2`` on the other coefficients, Cauchy curvature on coefficient ``k``).
    """
    y = counts.T  # (G, n)
    g, n = y.shape
    p = x.shape[1]
    sm = np.zeros(p)
    sm[k] = 1.0
    ns = 1.0 - sm
    logsize = np.log(size)[:, None]

    def objective(b, rows):
        xb = b @ x.T
        yr, sr = y[rows], size[rows, None]
        prior = ((b * ns) ** 2).sum(1) / (2 * s0**2) + np.log1p((b[:, k] / s) ** 2)
        nll = (yr * xb - (yr + sr) * np.logaddexp(xb + offset, logsize[rows])).sum(1)
        return prior - nll

    def grad_hess(b, rows):
        xb = b @ x.T
        yr, sr = y[rows], size[rows, None]
        e = np.exp(np.clip(xb + offset, -700, 700))
        d_prior = b * ns / s0**2 + 2 * b * sm / (s**2 + b[:, k : k + 1] ** 2)
        d_nll = (yr - (yr + sr) / (1.0 + sr / e)) @ x
        frac = (yr + sr) * sr * e / (sr + e) ** 2
        h = np.einsum("gn,np,nq->gpq", frac, x, x)
        bk2 = b[:, k] ** 2
        dg = ns[None, :] / s0**2 + sm[None, :] * (2 * (s**2 - bk2) / (s**2 + bk2) ** 2)[:, None]
        h[:, np.arange(p), np.arange(p)] += dg
        return d_prior - d_nll, h

    with np.errstate(all="ignore"), single_threaded_blas():
        beta = np.tile(0.1 * (-1.0) ** np.arange(p), (g, 1))
        f = objective(beta, np.arange(g))
        lam = np.full(g, 1e-3)
        conv = np.zeros(g, dtype=bool)
        active = np.arange(g)
        eye = np.eye(p)
        for _ in range(maxit):
            if active.size == 0:
                break
            b = beta[active]
            gr, h = grad_hess(b, active)
            fa = f[active]
            scale = np.maximum(np.abs(fa), 1.0)
            done = np.max(np.abs(gr), 1) / scale < tol
            conv[active[done]] = True
            keep = ~done
            active, b, gr, h, fa, la = active[keep], b[keep], gr[keep], h[keep], fa[keep], lam[active[keep]]
            if active.size == 0:
                break
            step = np.linalg.solve(h + la[:, None, None] * eye, gr[:, :, None])[:, :, 0]
            t = np.ones(active.size)
            newb = b - step
            newf = objective(newb, active)
            for _ in range(30):  # backtracking
                bad = ~(newf <= fa)
                if not bad.any():
                    break
                t = np.where(bad, t / 2, t)
                newb = np.where(bad[:, None], b - t[:, None] * step, newb)
                newf = np.where(bad, objective(newb, active), newf)
            improved = newf <= fa
            rel = np.abs(fa - newf) / np.maximum(np.abs(fa), 1.0)
            beta[active] = np.where(improved[:, None], newb, b)
            f[active] = np.where(improved, newf, fa)
            lam[active] = np.where(improved, la / 3, la * 10)
            small = improved & (rel < 1e-14)
            conv[active[small]] = True
            active = active[~small & (lam[active] < 1e12)]
        _, h = grad_hess(beta, np.arange(g))
        inv_h = np.linalg.inv(h)
    return beta, inv_h, conv
