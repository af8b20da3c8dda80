"""Batched dispersion kernels of R DESeq2, vectorised over genes (array layout: see ``_kernels``).

The log posterior of log(alpha) with the Cox-Reid term, its derivative, the line search (``fitDisp``) and the grid
search (``fitDispGrid``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _jit
from . import _kernels as K
from ._kernels import LOG_ALPHA_HI, LOG_ALPHA_LO, Array, CountSums, DesignOps


def _rowdot(be, a: Array, b: Array) -> Array:
    """Row-wise dot products ``sum_j a_ij b_ij``."""
    if be.name == "numpy":
        return np.einsum("ij,ij->i", a, b)
    return (a * b).sum(1)


def log_posterior(
    ops: DesignOps,
    a: Array,
    y: Array,
    mu: Array,
    prior_mean: Array | None,
    prior_var: float,
    *,
    use_cr: bool = True,
    sums: CountSums | None = None,
    rows: Array | None = None,
    keep: dict | None = None,
):
    """R's ``log_posterior`` (with the prior when ``prior_mean`` is given), one ``a = log(alpha)`` per gene.

    ``sum(lgamma(y + r) - lgamma(r) - y log(mu + r) - r log(1 + mu alpha))`` with ``r = 1/alpha``, as in R;
    the ``lgamma`` differences are summed over the distinct counts of each gene when ``sums`` is given
    (``rows``: the genes of ``y`` in ``sums``).
    """
    be = ops.be
    alpha = be.exp(a)
    r = 1.0 / alpha
    rc = r[:, None]
    if sums is not None:
        lg = sums.sum_diff(be.lgamma, r, rows)
    elif be.name == "numpy" and _jit.ENABLED:
        lg = K.dense_diff_sum(be.lgamma, y, r)
    else:
        lg = be.lgamma(y + rc)
        lg -= be.lgamma(rc)
        lg = be.rowsum(lg)
    # few temporaries: t = log(mu + r) in place, ma = mu * alpha -> log1p in place
    t = mu + rc
    be.log(t, out=t)
    out = lg - _rowdot(be, y, t)
    ma = mu * alpha[:, None]
    if use_cr:
        w = ma + 1.0
        be.divide(mu, w, out=w)  # = 1 / (1/mu + alpha)
        low = ops.chol(ops.xtwx(w))
        out = out - 0.5 * ops.logdet_from_chol(low)
        if keep is not None:  # the derivative at the same point reuses these
            keep["low"], keep["w"] = low, w
    be.log1p(ma, out=ma)
    if keep is not None:
        keep["l1p"] = ma  # log(1 + mu alpha)
    out = out - r * be.rowsum(ma)
    if prior_mean is not None:
        out = out - 0.5 * (a - prior_mean) ** 2 / prior_var
    return out


def dlog_posterior(
    ops: DesignOps,
    a: Array,
    y: Array,
    mu: Array,
    prior_mean: Array | None,
    prior_var: float,
    *,
    use_cr: bool = True,
    sums: CountSums | None = None,
    rows: Array | None = None,
    low: Array | None = None,
    w: Array | None = None,
    l1p: Array | None = None,
):
    """Derivative of :func:`log_posterior` with respect to ``log(alpha)`` (R's ``dlog_posterior``).

    ``alpha^-2 sum(digamma(r) - digamma(y + r) + log(1 + mu alpha) - mu alpha / (1 + mu alpha) + y / (mu + r))``
    plus the Cox-Reid and prior terms, as in R (digamma differences over distinct counts when ``sums`` is given).
    ``low``, ``w`` and ``l1p`` (``log(1 + mu alpha)``, overwritten) are what :func:`log_posterior` kept at the
    same point.
    """
    be = ops.be
    alpha = be.exp(a)
    r = 1.0 / alpha
    rc = r[:, None]
    if sums is not None:
        dg = -sums.sum_diff(be.digamma, r, rows)
    elif be.name == "numpy" and _jit.ENABLED:
        dg = -K.dense_diff_sum(be.digamma, y, r)
    else:
        dg = be.digamma(y + rc)
        dg -= be.digamma(rc)
        dg = -be.rowsum(dg)
    ma = mu * alpha[:, None]
    q = ma + 1.0
    be.divide(ma, q, out=q)  # mu alpha / (1 + mu alpha); alpha * w would differ in the last bit, and the line
    # search is that sensitive (seen: a MAP dispersion 3% away from R's)
    if l1p is None:
        be.log1p(ma, out=ma)
    else:
        ma = l1p
    ma -= q
    t = mu + rc
    be.reciprocal(t, out=t)
    out = (dg + be.rowsum(ma) + _rowdot(be, y, t)) / alpha**2
    if use_cr:
        if low is None:
            w = q * rc  # = mu / (1 + mu alpha)
            low = ops.chol(ops.xtwx(w))
        binv = ops.inv_from_chol(low)
        w = w * w
        # d log det(B) / d alpha = tr(B^-1 X' dW X) with dW = -w^2, and the CR term is -0.5 log det(B)
        out = out + 0.5 * _rowdot(be, w, ops.quad(binv))
    out = out * alpha
    if prior_mean is not None:
        out = out - (a - prior_mean) / prior_var
    return out


@dataclass
class DispFit:
    """Output of :func:`fit_disp` (R's ``fitDisp``)."""

    log_alpha: Array
    iters: Array
    initial_lp: Array
    last_lp: Array


def fit_disp(
    ops: DesignOps,
    y: Array,
    mu: Array,
    log_alpha0: Array,
    *,
    prior_mean: Array | None,
    prior_var: float,
    min_log_alpha: float,
    kappa_0: float = 1.0,
    tol: float = 1e-6,
    maxit: int = 100,
    use_cr: bool = True,
) -> DispFit:
    """Backtracking (Armijo) line search on log(alpha) for every gene, as R's ``fitDisp``."""
    be = ops.be
    if be.name == "numpy" and _jit.ENABLED and y.shape[1] >= _jit.MIN_SAMPLES_DISTINCT:
        # the same search gene by gene, compiled (see ``_jit``); with fewer samples the vector loops of a gene are
        # too short to pay, and the batched search below (with compiled special-function sums) is faster
        return _fit_disp_jit(ops, y, mu, log_alpha0, prior_mean, prior_var, min_log_alpha, kappa_0, tol, maxit, use_cr)
    g = y.shape[0]
    eps = 1e-4
    sums = K.count_sums(be, y)  # through the module, so that tests can swap it
    a = be.copy(log_alpha0)
    every = be.arange(g)
    lp = log_posterior(ops, a, y, mu, prior_mean, prior_var, use_cr=use_cr, sums=sums, rows=every)
    dlp = dlog_posterior(ops, a, y, mu, prior_mean, prior_var, use_cr=use_cr, sums=sums, rows=every)
    initial_lp = be.copy(lp)
    kappa = be.full(g, kappa_0)
    iters = be.zeros_int(g)
    n_accept = be.zeros_int(g)
    active = be.arange(g)
    # the working set (y, mu rows of unfinished genes) is compacted when it shrinks: at once for dense sums (a
    # compaction costs what gathering the rows of the active genes would), at 70% with count sums (their subset
    # is dearer)
    wy, wmu, wpm, wpos = y, mu, prior_mean, be.arange(g)
    shrink = 0.7 if sums is not None else 1.0
    for _ in range(maxit):
        if active.shape[0] == 0:
            break
        if active.shape[0] < shrink * wpos.shape[0]:
            wy, wmu = be.rows(y, active), be.rows(mu, active)
            wpm = None if prior_mean is None else prior_mean[active]
            if sums is not None:  # renumbered to the working set: ``rows`` below are then positions in it
                sums = sums.subset(_locate(be, wpos, active))
            wpos = active
            loc = be.arange(active.shape[0])
        else:
            loc = _locate(be, wpos, active)
        aa, la, da, ka = a[active], lp[active], dlp[active], kappa[active]
        pm = None if wpm is None else wpm[loc]
        iters[active] += 1
        prop = aa + ka * da
        ka = be.where(prop < LOG_ALPHA_LO, (LOG_ALPHA_LO - aa) / da, ka)
        ka = be.where(prop > LOG_ALPHA_HI, (LOG_ALPHA_HI - aa) / da, ka)
        anew = aa + ka * da
        kept: dict = {}
        lpnew = log_posterior(
            ops, anew, *_rows2(be, wy, wmu, loc), pm, prior_var, use_cr=use_cr, sums=sums, rows=loc, keep=kept
        )
        accept = -lpnew <= -la - ka * eps * da**2
        change = lpnew - la
        small = accept & (change < tol)
        gone = accept & ~small & (anew < min_log_alpha)
        cont = accept & ~small & ~gone
        a[active] = be.where(accept, anew, aa)
        # lp is updated on accepted moves, except when log(alpha) fell below its floor (R breaks first)
        lp[active] = be.where(small | cont, lpnew, la)
        n_acc = n_accept[active] + accept
        n_accept[active] = n_acc
        knew = be.where(accept, be.clip(ka * 1.1, None, kappa_0), ka / 2.0)
        knew = be.where(accept & (n_acc % 5 == 0), knew / 2.0, knew)
        kappa[active] = knew
        if bool(cont.any()):
            ci = active[cont]
            lc = loc[cont]
            pmc = None if wpm is None else wpm[lc]
            low, wc, l1p = (kept.get(k) for k in ("low", "w", "l1p"))
            if not bool(cont.all()):  # the kept arrays of the genes that go on
                pos = be.flatnonzero(cont)
                low = None if low is None else low[:, pos]
                wc = None if wc is None else be.rows(wc, pos)
                l1p = be.rows(l1p, pos)
            dlp[ci] = dlog_posterior(
                ops,
                a[ci],
                *_rows2(be, wy, wmu, lc),
                pmc,
                prior_var,
                use_cr=use_cr,
                sums=sums,
                rows=lc,
                low=low,
                w=wc,
                l1p=l1p,
            )
        active = active[~(small | gone)]
    return DispFit(log_alpha=a, iters=iters, initial_lp=initial_lp, last_lp=lp)


def _fit_disp_jit(ops, y, mu, log_alpha0, prior_mean, prior_var, min_log_alpha, kappa_0, tol, maxit, use_cr):
    f64 = np.float64
    use_prior = prior_mean is not None
    a, iters, init, last = _jit.fit_disp_rows(
        _jit.SPECIAL,
        np.ascontiguousarray(y, dtype=f64),
        np.ascontiguousarray(mu, dtype=f64),
        ops.xx_t_np,
        ops.xxq_t_np,
        ops.p,
        np.ascontiguousarray(log_alpha0, dtype=f64),
        np.ascontiguousarray(prior_mean, dtype=f64) if use_prior else np.zeros(1),
        use_prior,
        float(prior_var),
        float(min_log_alpha),
        float(kappa_0),
        float(tol),
        int(maxit),
        bool(use_cr),
    )
    return DispFit(log_alpha=a, iters=iters, initial_lp=init, last_lp=last)


def _rows2(be, y: Array, mu: Array, loc: Array) -> tuple[Array, Array]:
    """The rows ``loc`` of ``y`` and ``mu``; no copy when ``loc`` is every row (the working set was just compacted)."""
    if loc.shape[0] == y.shape[0]:
        return y, mu
    return be.rows(y, loc), be.rows(mu, loc)


def _locate(be, pos: Array, active: Array) -> Array:
    """Positions of the (sorted) gene indices ``active`` within the (sorted) working-set indices ``pos``."""
    xp = be.xp
    return xp.searchsorted(pos, active)


def fit_disp_grid(
    ops: DesignOps,
    y: Array,
    mu: Array,
    *,
    prior_mean: Array | None,
    prior_var: float,
    max_disp: float,
    n_grid: int = 20,
    use_cr: bool = True,
) -> Array:
    """R's ``fitDispGrid``: coarse then fine grid of the log posterior; returns alpha ``(G,)``."""
    be = ops.be
    g = y.shape[0]
    if g == 0:
        return be.zeros(0)
    grid = be.linspace(math.log(1e-8), math.log(max_disp), n_grid)
    delta = float(grid[1] - grid[0])

    sums = K.count_sums(be, y)  # through the module, so that tests can swap it
    every = be.arange(g)

    def best(points: Array) -> Array:  # (G, k) candidate log alphas -> argmax per gene
        cols = []
        for j in range(points.shape[1]):
            lp = log_posterior(
                ops, be.copy(points[:, j]), y, mu, prior_mean, prior_var, use_cr=use_cr, sums=sums, rows=every
            )
            cols.append(be.where(be.isnan(lp), -math.inf, lp))
        lps = be.stack(cols, 1)
        return be.take_along(points, lps.argmax(1))

    coarse = be.zeros((g, n_grid)) + grid[None, :]
    a_hat = best(coarse)
    offsets = be.linspace(-delta, delta, n_grid)
    return be.exp(best(a_hat[:, None] + offsets[None, :]))
