"""Generative DE statistics from posterior draws of log2 fold changes (a pure kernel: arrays in, a table out).

Used by :meth:`gendex.model.NBVAE.get_generative_de` and :func:`gendex.tl.generative_de`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ._ash import AshPosterior, _grid, _mixture_weights, ash, posterior_fdr

#: Sources of uncertainty of the generative log fold change draws (:meth:`gendex.model.NBVAE.get_lfc_draws`).
UNCERTAINTY_SOURCES = ("z", "decoder", "dispersion", "residual", "imbalance", "samples")
#: The default sources: all but ``"samples"`` (designed groups have a fixed composition, see ``get_lfc_draws``).
DEFAULT_UNCERTAINTY = ("z", "decoder", "dispersion", "residual", "imbalance")
#: Columns of a generative DE table, in order (``baseMean`` first, then :func:`de_table`'s).
DE_TABLE_COLUMNS = (
    "log2FoldChange", "lfcSE", "lfc_lower", "lfc_upper", "prob_de", "prob_up", "prob_down", "lfsr", "qvalue",
    "is_de", "stat", "pvalue", "padj", "lfc_shrunk", "lfc_shrunk_se",
)  # fmt: skip


def de_table(
    draws: NDArray,
    *,
    delta: float,
    ci_level: float,
    fdr_target: float,
    lfc_prior: Literal["adaptive", "flat"] = "adaptive",
    node_sizes: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Generative DE statistics from posterior draws of log2 fold changes ``(n_draws, n_genes)``.

    Estimates and intervals are the draws' own, as DESeq2's ``results()`` reports maximum-likelihood estimates:
    ``log2FoldChange`` and ``lfcSE`` are the draws' mean and sd, ``lfc_lower``/``lfc_upper`` their equal-tailed
    ``ci_level`` quantiles (an interval that holds every gene's log fold change, large or null, about as often
    as ``ci_level``; intervals under the adaptive prior below hold the null genes' almost always and the
    differentially expressed genes' far less often, being pulled towards 0) and ``stat = log2FoldChange /
    lfcSE``.

    The calls come from a posterior. With ``lfc_prior="adaptive"`` each gene's draws summarise its likelihood
    and an adaptive shrinkage prior fitted to all genes (:func:`gendex.stats.ash`: zero-centred normals and a
    point mass at 0) gives the posterior, whose mean and sd are ``lfc_shrunk``/``lfc_shrunk_se`` (as DESeq2's
    ``lfcShrink(type="ashr")``). With ``node_sizes`` (the number of draws at each node of the dispersion
    posterior, the draws coming grouped by node, as :meth:`gendex.model.NBVAE.get_lfc_draws` makes them) the
    likelihood is the mixture of the nodes' normals (:func:`ash_scale_mixture`), whose tails are heavier than
    one normal's when a gene's dispersion is uncertain; otherwise one normal of the draws' mean and sd. With
    ``"flat"`` the draws are the posterior. Genes whose draws are not finite get NaN.

    Calls are directional: ``prob_up = P(LFC > delta)``, ``prob_down = P(LFC < -delta)``; a gene's local error
    is ``1 - max(prob_up, prob_down)``, the posterior probability that its change is not beyond ``delta`` in
    the direction it would be called (``pvalue`` holds it, for tools that read that name); ``qvalue`` (and
    ``padj``) is the mean local error of this gene and every gene ranked above it, the posterior expected
    directional FDR of that list; ``is_de = qvalue <= fdr_target``. So the error rate controlled is the
    posterior expected share, among the called genes, of those whose log fold change is not beyond ``delta``
    in the called direction (wrong sign, or too small): at most ``fdr_target``. It is a property of the list,
    not of each gene: the last genes called may have local errors above ``fdr_target`` (``lfsr`` is each
    gene's own false sign rate).
    """
    n_genes = draws.shape[1]
    ok = np.all(np.isfinite(draws), axis=0)
    d = draws[:, ok].astype(np.float64)
    m, s = d.mean(0), np.maximum(d.std(0, ddof=1), 1e-6)
    a = (1.0 - ci_level) / 2.0
    cols: dict[str, NDArray] = {"log2FoldChange": m, "lfcSE": s}
    cols["lfc_lower"], cols["lfc_upper"] = np.quantile(d, [a, 1.0 - a], axis=0)  # one partition for both
    if lfc_prior == "adaptive":
        post = ash(m, s) if node_sizes is None else ash_scale_mixture(m, _node_sds(d, node_sizes), node_sizes)
        cols["lfc_shrunk"], cols["lfc_shrunk_se"] = post.mean, post.sd
        up, down = post.prob_greater(delta), post.prob_less(-delta)
        cols["lfsr"] = post.lfsr()
    else:
        cols["lfc_shrunk"], cols["lfc_shrunk_se"] = m, s
        up, down = (d > delta).mean(0), (d < -delta).mean(0)
        cols["lfsr"] = np.minimum((d >= 0).mean(0), (d <= 0).mean(0))
    up, down = np.clip(up, 0.0, 1.0), np.clip(down, 0.0, 1.0)
    cols["prob_de"] = np.clip(up + down, 0.0, 1.0)
    cols["prob_up"], cols["prob_down"] = up, down
    cols["pvalue"] = 1.0 - np.maximum(up, down)
    out = pd.DataFrame({k: np.full(n_genes, np.nan) for k in cols})
    for k, v in cols.items():
        out.loc[ok, k] = v
    out["qvalue"] = posterior_fdr(out["pvalue"].to_numpy())
    out["is_de"] = (out["qvalue"] <= fdr_target).to_numpy() & ok
    out["stat"] = out["log2FoldChange"] / out["lfcSE"].where(out["lfcSE"] > 0)
    out["padj"] = out["qvalue"]
    return out[list(DE_TABLE_COLUMNS)]


def _node_sds(draws: NDArray, node_sizes: Sequence[int]) -> NDArray[np.float64]:
    """Per gene and dispersion node, the sd of that node's draws about their own mean, ``(n_genes, n_nodes)``."""
    bounds = np.cumsum([0, *node_sizes])
    if bounds[-1] != draws.shape[0]:
        raise ValueError(f"`node_sizes` sum to {bounds[-1]}, not to the {draws.shape[0]} draws")
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        part = draws[a:b]
        out.append(part.std(0, ddof=1) if b - a > 1 else np.full(draws.shape[1], np.nan))
    sds = np.column_stack(out)
    # a node with a single draw has no sd of its own: the pooled sd stands in for it
    pooled = np.sqrt(np.nanmean(sds**2, axis=1, keepdims=True))
    return np.maximum(np.where(np.isfinite(sds), sds, pooled), 1e-6)


def ash_scale_mixture(betahat: NDArray, se: NDArray, node_sizes: Sequence[int]) -> AshPosterior:
    """Adaptive shrinkage (:func:`gendex.stats.ash`) with a scale-mixture likelihood per effect.

    ``betahat ~ sum_j w_j N(beta, se_j^2)`` with ``w_j`` the share of node ``j`` in ``node_sizes``: the draws
    at each node of the dispersion posterior are normal, and their mixture has heavier tails than one normal of
    the same variance (few residual degrees of freedom: a gene's dispersion may be far above its estimate). The
    prior (the same grid, point mass and null penalty as :func:`~gendex.stats.ash`) is fitted to this
    likelihood, and each effect's posterior is a mixture over prior components and nodes.
    """
    b = np.asarray(betahat, dtype=np.float64)
    s = np.asarray(se, dtype=np.float64)
    w = np.asarray(node_sizes, dtype=np.float64)
    w = w / w.sum()
    s2 = s**2
    pooled = np.sqrt((s2 * w).sum(1))
    sds = _grid(b, pooled)
    sd2 = sds**2
    n, n_nodes = s.shape
    # (n, J, K) arrays updated in place (the arithmetic of the plain expressions, fewer temporaries):
    # total = sqrt(s_j^2 + sd_k^2), joint = exp(log w_j - log total - (b / total)^2 / 2 - top)
    total = s2[:, :, None] + sd2[None, None, :]
    np.sqrt(total, out=total)
    joint = np.log(total)
    np.subtract(np.log(w)[None, :, None], joint, out=joint)
    quad = np.divide(b[:, None, None], total)
    np.square(quad, out=quad)
    quad *= 0.5
    joint -= quad
    del quad
    joint -= joint.max(axis=(1, 2), keepdims=True)
    np.exp(joint, out=joint)  # proportional to w_j N(b; 0, s_j^2 + sd_k^2)
    penalty = np.ones(len(sds))
    penalty[sds == 0] = 10.0
    pi = _mixture_weights(joint.sum(1), penalty, max_iter=1000, tol=1e-8)
    joint *= pi[None, None, :]
    joint /= joint.sum(axis=(1, 2), keepdims=True)
    post = joint.reshape(n, -1)
    keep = np.flatnonzero((post.max(0) > 1e-10) | np.tile(sds == 0, n_nodes))
    weights = post[:, keep]
    weights /= weights.sum(1, keepdims=True)
    # the posterior of each (node, component) pair, for the pairs that carry weight only
    shrink = np.divide(np.tile(sd2, n_nodes)[keep], np.square(total.reshape(n, -1)[:, keep]))
    means = shrink * b[:, None]
    post_sds = np.sqrt(shrink, out=shrink)
    post_sds *= s[:, keep // len(sds)]
    return AshPosterior(weights, means, post_sds, pi, sds)
