"""Generative DE statistics from posterior draws of log2 fold changes (a pure kernel: arrays in, a table out).

Used by :meth:`gendex.model.NBVAE.get_generative_de` and :func:`gendex.tl.generative_de`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ._ash import ash, posterior_fdr

#: Sources of uncertainty of the generative log fold change draws (:meth:`gendex.model.NBVAE.get_lfc_draws`).
UNCERTAINTY_SOURCES = ("z", "decoder", "dispersion", "residual", "imbalance", "samples")
#: The default sources: all but ``"samples"`` (designed groups have a fixed composition, see ``get_lfc_draws``).
DEFAULT_UNCERTAINTY = ("z", "decoder", "dispersion", "residual", "imbalance")
#: Columns of a generative DE table, in order (``baseMean`` first, then :func:`de_table`'s).
DE_TABLE_COLUMNS = (
    "log2FoldChange", "lfcSE", "lfc_lower", "lfc_upper", "prob_de", "prob_up", "prob_down", "lfsr", "qvalue",
    "is_de", "stat", "pvalue", "padj", "lfc_unshrunk", "lfc_unshrunk_se",
)  # fmt: skip


def de_table(
    draws: NDArray,
    *,
    delta: float,
    ci_level: float,
    fdr_target: float,
    lfc_prior: Literal["adaptive", "flat"] = "adaptive",
) -> pd.DataFrame:
    """Generative DE statistics from posterior draws of log2 fold changes ``(n_draws, n_genes)``.

    With ``lfc_prior="adaptive"`` the draws' means and sds summarise each gene's likelihood and an adaptive
    shrinkage prior (:func:`gendex.stats.ash`) estimated from all genes gives the posterior; with ``"flat"`` the
    draws are the posterior. Genes whose draws are not finite get NaN.

    Calls are directional: ``prob_up = P(LFC > delta)``, ``prob_down = P(LFC < -delta)``; a gene's local error
    is ``1 - max(prob_up, prob_down)``, the posterior probability that its change is not beyond ``delta`` in
    the direction it would be called; ``qvalue`` is the mean local error of this gene and every gene ranked
    above it (the posterior expected directional FDR of that list), raised to the gene's own ``lfsr`` where
    that is larger; ``is_de = qvalue <= fdr_target``. So the called genes' posterior expected share of
    directional false discoveries is at most ``fdr_target`` and no called gene has ``lfsr > fdr_target``.
    ``pvalue`` holds the local error and ``padj`` the ``qvalue`` (for tools that read those names).
    """
    n_genes = draws.shape[1]
    ok = np.all(np.isfinite(draws), axis=0)
    d = draws[:, ok].astype(np.float64)
    m, s = d.mean(0), np.maximum(d.std(0, ddof=1), 1e-6)
    a = (1.0 - ci_level) / 2.0
    cols: dict[str, NDArray] = {}
    if lfc_prior == "adaptive":
        post = ash(m, s)
        cols["log2FoldChange"], cols["lfcSE"] = post.mean, post.sd
        lower, upper = post.quantiles([a, 1.0 - a])
        cols["lfc_lower"], cols["lfc_upper"] = lower, upper
        up, down = post.prob_greater(delta), post.prob_less(-delta)
        cols["lfsr"] = post.lfsr()
    else:
        cols["log2FoldChange"], cols["lfcSE"] = m, s
        cols["lfc_lower"], cols["lfc_upper"] = np.quantile(d, a, axis=0), np.quantile(d, 1.0 - a, axis=0)
        up, down = (d > delta).mean(0), (d < -delta).mean(0)
        cols["lfsr"] = np.minimum((d >= 0).mean(0), (d <= 0).mean(0))
    up, down = np.clip(up, 0.0, 1.0), np.clip(down, 0.0, 1.0)
    cols["prob_de"] = np.clip(up + down, 0.0, 1.0)
    cols["prob_up"], cols["prob_down"] = up, down
    cols["pvalue"] = 1.0 - np.maximum(up, down)
    cols["lfc_unshrunk"], cols["lfc_unshrunk_se"] = m, s
    out = pd.DataFrame({k: np.full(n_genes, np.nan) for k in cols})
    for k, v in cols.items():
        out.loc[ok, k] = v
    out["qvalue"] = np.fmax(posterior_fdr(out["pvalue"].to_numpy()), out["lfsr"].to_numpy())
    out["is_de"] = (out["qvalue"] <= fdr_target).to_numpy() & ok
    out["stat"] = out["log2FoldChange"] / out["lfcSE"].where(out["lfcSE"] > 0)
    out["padj"] = out["qvalue"]
    return out[list(DE_TABLE_COLUMNS)]
