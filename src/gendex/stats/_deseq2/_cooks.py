"""Cook's distances and outlier bookkeeping (R's ``nbinomWaldTest`` and ``replaceOutliers``) for the DESeq2 fit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._dispersion import _genewise, _map
from ._glm import _Ctx, fit_glm

#: cell labels of the designs seen last (``np.unique`` over rows sorts them: ~10 ms for 10,000 samples per batch)
_CELLS: dict[tuple, np.ndarray] = {}


def _cells(design: np.ndarray) -> np.ndarray:
    """Integer cell label per sample: samples with identical design rows share a cell."""
    design = np.ascontiguousarray(design)
    key = (design.shape, design.dtype.str, design.tobytes())
    cells = _CELLS.get(key)
    if cells is None:
        _, inv = np.unique(design, axis=0, return_inverse=True)
        cells = inv.ravel()
        cells.flags.writeable = False
        if len(_CELLS) >= 8:
            _CELLS.clear()
        _CELLS[key] = cells
    return cells


def n_or_more_in_cell(design: np.ndarray, n: int) -> np.ndarray:
    """R's ``nOrMoreInCell``: samples whose design row occurs at least ``n`` times."""
    cells = _cells(design)
    return np.bincount(cells)[cells] >= n


def _trimmed_mean(be, sorted_vals, trim: float):
    """R's ``mean(x, trim=trim)`` along the last axis of an already sorted array."""
    n = sorted_vals.shape[-1]
    if trim >= 0.5:
        lo = (n - 1) // 2
        return 0.5 * (sorted_vals[..., lo] + sorted_vals[..., n - 1 - lo])
    lo = int(math.floor(n * trim))
    return sorted_vals[..., lo : n - lo].mean(-1)


def _sort_rows(be, a):
    return be.xp.sort(a, 1) if be.name == "numpy" else be.torch.sort(a, dim=1).values


def robust_moments_disp(be, normed, design: np.ndarray):
    """R's ``robustMethodOfMomentsDisp`` for ``normed`` (G, n) normalised counts."""
    three = n_or_more_in_cell(design, 3)
    if three.any():
        cells = _cells(design)
        counts = np.bincount(cells)
        var_est = []
        for c in range(counts.size):
            if counts[c] < 3:
                continue
            sub = normed[:, be.index(np.flatnonzero(cells == c))]
            nc = sub.shape[1]
            k = 0 if nc <= 3.5 else (1 if nc <= 23.5 else 2)
            trim = (1 / 3, 1 / 4, 1 / 8)[k]
            scale = (2.04, 1.86, 1.51)[k]
            cm = _trimmed_mean(be, _sort_rows(be, sub), trim)
            sq = (sub - cm[:, None]) ** 2
            var_est.append(scale * _trimmed_mean(be, _sort_rows(be, sq), trim))
        v = be.amax(be.stack(var_est, 1), 1)
    else:
        rm = _trimmed_mean(be, _sort_rows(be, normed), 1 / 8)
        sq = (normed - rm[:, None]) ** 2
        v = 1.51 * _trimmed_mean(be, _sort_rows(be, sq), 1 / 8)
    m = normed.mean(1)
    return be.clip((v - m) / m**2, 0.04, None)


def _wald_fit(y, disp, ctx: _Ctx) -> dict:
    """GLM fit with final dispersions plus Cook's distances (R's ``nbinomWaldTest``)."""
    glm = fit_glm(y, disp, ctx)
    alpha_rm = robust_moments_disp(ctx.be, y / ctx.sf, ctx.design)
    v = glm.mu + alpha_rm[:, None] * glm.mu**2
    cooks = (y - glm.mu) ** 2 / v / ctx.p * glm.hat / (1.0 - glm.hat) ** 2
    return {
        "beta": glm.beta,
        "cov": glm.cov,
        "hat": glm.hat,
        "mu": glm.mu,
        "loglik": glm.loglik,
        "conv": glm.conv,
        "iters": glm.iters,
        "cooks": cooks,
    }


def _chunks(idx: np.ndarray, size: int):
    for start in range(0, idx.size, size):
        yield idx[start : start + size]


def _nan_columns(n: int, nan_cols: np.ndarray) -> np.ndarray:
    """An uninitialised ``(n, G)`` matrix whose columns ``nan_cols`` (boolean) are NaN."""
    out = np.empty((n, nan_cols.size))
    out[:, nan_cols] = np.nan
    return out


class _Stage2Out:
    """Accumulates per-gene outputs of the MAP + GLM + Cook's stage."""

    n: int
    keep: bool
    samples_for_cooks: np.ndarray
    replaceable: np.ndarray
    cutoff: float
    map: np.ndarray
    final: np.ndarray
    outlier: np.ndarray
    map_iters: np.ndarray
    beta: np.ndarray
    se: np.ndarray
    cov: np.ndarray
    conv: np.ndarray
    iters: np.ndarray
    loglik: np.ndarray
    mu: Any  # (n, G) arrays when ``keep``, else None
    hat: Any
    cooks: Any
    max_cooks_all: np.ndarray
    max_cooks_any: np.ndarray
    max_cooks_nonrepl: np.ndarray
    cooks_argmax: np.ndarray
    above: dict[int, np.ndarray]

    @classmethod
    def empty(cls, n, p, all_zero, keep, *, samples_for_cooks, replaceable, cutoff):
        self = cls()
        g = all_zero.size
        nanv = np.full(g, np.nan)
        self.n, self.keep = n, keep
        self.samples_for_cooks, self.replaceable, self.cutoff = samples_for_cooks, replaceable, cutoff
        self.map, self.final = nanv.copy(), nanv.copy()
        self.outlier = np.zeros(g, dtype=bool)
        self.map_iters = np.zeros(g, dtype=np.int64)
        self.beta = np.full((g, p), np.nan)
        self.se = np.full((g, p), np.nan)
        self.cov = np.full((g, p, p), np.nan)
        self.conv = np.zeros(g, dtype=bool)
        self.iters = np.zeros(g, dtype=np.int64)
        self.loglik = nanv.copy()
        # every gene that is not all zero is written by the fit; filling the matrices first would cost a pass
        self.mu, self.hat, self.cooks = (_nan_columns(n, all_zero) if keep else None for _ in range(3))
        self.max_cooks_all = nanv.copy()  # over samples in cells with >= 3 replicates
        self.max_cooks_any = nanv.copy()  # over all samples
        self.max_cooks_nonrepl = nanv.copy()  # R's value after refitting (replaceable samples zeroed)
        self.cooks_argmax = np.full(g, -1, dtype=np.int64)
        self.above = {}  # gene -> samples with Cook's distance above the cutoff
        return self

    def record_cooks(self, idx: np.ndarray, cooks: np.ndarray) -> None:
        """Per-gene summaries of Cook's distances ``cooks`` (n, len(idx))."""
        if self.keep:
            self.cooks[:, idx] = cooks
        c = np.nan_to_num(cooks, nan=-np.inf)
        if self.samples_for_cooks.any():
            self.max_cooks_all[idx] = c[self.samples_for_cooks].max(0)
            rest = self.samples_for_cooks & ~self.replaceable
            self.max_cooks_nonrepl[idx] = np.maximum(c[rest].max(0), 0.0) if rest.any() else 0.0
        self.max_cooks_any[idx] = c.max(0)
        self.cooks_argmax[idx] = np.argmax(c, axis=0)
        hit = np.flatnonzero(self.max_cooks_any[idx] > self.cutoff)
        for k in hit:
            self.above[int(idx[k])] = c[:, k] > self.cutoff


def _stage2(y, mu, idx, ctx, gene_disp, fitted, prior_var, var_log, out: _Stage2Out, *, keep_cooks=True):
    gd = ctx.t(gene_disp[idx])
    ft = ctx.t(fitted[idx])
    m = _map(y, mu, gd, ft, ctx, prior_var, var_log)
    wf = _wald_fit(y, m["final"], ctx)
    out.map[idx] = ctx.np(m["map"])
    out.final[idx] = ctx.np(m["final"])
    out.outlier[idx] = ctx.np(m["outlier"])
    out.map_iters[idx] = ctx.np(m["iters"])
    cov_soa = ctx.np(wf["cov"])  # (P, g)
    cov = np.stack([np.stack([cov_soa[ctx.ops.k[(i, j)]] for j in range(ctx.p)], 1) for i in range(ctx.p)], 1)
    out.beta[idx] = ctx.np(wf["beta"])
    out.cov[idx] = cov
    out.se[idx] = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0))
    out.conv[idx] = ctx.np(wf["conv"])
    out.iters[idx] = ctx.np(wf["iters"])
    out.loglik[idx] = ctx.np(wf["loglik"])
    if out.keep:
        out.mu[:, idx] = ctx.np(wf["mu"]).T
        out.hat[:, idx] = ctx.np(wf["hat"]).T
    if keep_cooks:
        out.record_cooks(idx, ctx.np(wf["cooks"]).T)


def replace_outliers_and_refit(
    cnt,
    ctx: _Ctx,
    out: _Stage2Out,
    trend,
    base_mean,
    base_var,
    fitted,
    gene_disp,
    gene_iters,
    prior_var,
    var_log,
    chunk_size: int,
    *,
    max_cooks: np.ndarray,
):
    """R's ``replaceOutliers`` and the refit of the genes whose counts it replaced.

    Counts with a Cook's distance above the cutoff, in samples of cells with ``min_replicates`` replicates, become
    the trimmed mean of the normalised counts times the size factor, and those genes are refitted (dispersions and
    GLM). Updates the per-gene arrays and ``out`` in place.

    Returns ``(replaced, refitted, replaced gene indices, their replaced counts, max Cook's per gene)``.
    """
    n, g_all = cnt.shape
    sf = ctx.sf_np
    replaceable, cutoff = out.replaceable, out.cutoff
    refitted = np.zeros(g_all, dtype=bool)
    rep_idx = np.zeros(0, dtype=np.int64)
    rep_counts = np.zeros((n, 0))
    replaced = np.nan_to_num(out.max_cooks_any, nan=-np.inf) > cutoff
    if replaced.any():
        genes = np.flatnonzero(replaced)
        sub = cnt[:, genes].astype(np.float64)
        normed = sub / sf[:, None]
        srt = np.sort(normed, axis=0)
        lo = int(math.floor(n * 0.2))
        trim_mean = srt[lo : n - lo].mean(0)
        repl = np.trunc(np.outer(sf, trim_mean))
        above = np.stack([out.above[int(g)] for g in genes], 1) & replaceable[:, None]
        new = np.where(above, repl, sub)
        rep_idx, rep_counts = genes, new
        new_bm = (new / sf[:, None]).mean(0)
        base_mean[genes] = new_bm
        base_var[genes] = (new / sf[:, None]).var(0, ddof=1)
        now_zero = new.sum(0) == 0
        do = genes[~now_zero]
        if do.size:
            refitted[do] = True
            fitted[do] = trend(base_mean[do])
            for chunk in _chunks(np.arange(do.size), chunk_size):
                gidx = do[chunk]
                y = ctx.t(new[:, ~now_zero][:, chunk].T)
                res = _genewise(y, ctx)
                gene_disp[gidx] = ctx.np(res["disp"])
                gene_iters[gidx] = ctx.np(res["iters"])
                _stage2(y, res["mu"], gidx, ctx, gene_disp, fitted, prior_var, var_log, out, keep_cooks=False)
        zero_genes = genes[now_zero]
        if zero_genes.size:
            for arr in (out.beta, out.se, out.loglik):
                arr[zero_genes] = np.nan
            out.cov[zero_genes] = np.nan
        if replaceable.all():
            max_cooks = np.full(g_all, np.nan)
        else:
            max_cooks = out.max_cooks_nonrepl.copy()
    # R stores originalCounts even when nothing was replaced; nothing else to do
    return replaced, refitted, rep_idx, rep_counts, max_cooks
