"""Synthetic stored results (written through the storage contracts) for the plot tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gendex as gdx
from gendex._utils import store_de_results
from gendex.stats import bh_adjust

ALL_ZERO = [0, 1]
COOKS = [2, 3, 4]
INDEP = [5, 6, 7, 8]


def add_deseq2(adata, *, key="deseq2", seed=1):
    """A DESeq2-shaped result from the simulation truth: DE genes get small p-values; NA genes like DESeq2's."""
    rng = np.random.default_rng(seed)
    n = adata.n_vars
    is_de = adata.var["is_de"].to_numpy()
    lfc = adata.var["true_log2fc"].to_numpy() + rng.normal(0, 0.15, n)
    se = np.full(n, 0.3)
    pvalue = np.where(is_de, 10.0 ** -rng.uniform(3, 12, n), rng.uniform(0, 1, n))
    pvalue[COOKS] = np.nan
    padj = bh_adjust(pvalue)
    padj[INDEP] = np.nan
    lfc[ALL_ZERO] = np.nan
    pvalue[ALL_ZERO] = padj[ALL_ZERO] = np.nan
    reason = np.array([""] * n, dtype=object)
    reason[ALL_ZERO], reason[COOKS], reason[INDEP] = "all_zero", "cooks_outlier", "independent_filtering"
    df = pd.DataFrame(
        {
            "baseMean": adata.var["true_base_mean"].to_numpy(),
            "log2FoldChange": lfc,
            "lfcSE": se,
            "stat": lfc / se,
            "pvalue": pvalue,
            "padj": padj,
            "na_reason": reason,
        },
        index=adata.var_names,
    )
    df.loc[adata.var_names[ALL_ZERO], "baseMean"] = 0.0
    store_de_results(
        adata, key, df, method="deseq2", params={"alpha": 0.05}, design="~condition", contrast=["condition", "B", "A"]
    )


def add_nbvae_de(adata, *, key="nbvae_de", seed=2):
    """A generative-DE-shaped result: every gene finite, intervals wider for the genes DESeq2 left NA."""
    rng = np.random.default_rng(seed)
    n = adata.n_vars
    lfc = 0.8 * adata.var["true_log2fc"].to_numpy() + rng.normal(0, 0.1, n)
    sd = np.full(n, 0.2)
    sd[ALL_ZERO + COOKS + INDEP] = 1.0
    prob_de = np.where(adata.var["is_de"].to_numpy(), 0.999, rng.uniform(0, 0.5, n))
    qvalue = np.minimum(1.0, (1 - prob_de) * 2)
    df = pd.DataFrame(
        {
            "baseMean": adata.var["true_base_mean"].to_numpy(),
            "log2FoldChange": lfc,
            "lfcSE": sd,
            "lfc_lower": lfc - 1.645 * sd,
            "lfc_upper": lfc + 1.645 * sd,
            "prob_de": prob_de,
            "lfsr": 1 - prob_de,
            "qvalue": qvalue,
            "is_de": qvalue <= 0.05,
            "stat": lfc / sd,
            "pvalue": 1 - prob_de,
            "padj": qvalue,
        },
        index=adata.var_names,
    )
    params = {"groupby": "condition", "group1": "B", "group2": "A", "delta": 0.25, "fdr_target": 0.05, "ci_level": 0.9}
    store_de_results(adata, key, df, method="nbvae", params=params, contrast=["condition", "B", "A"])


@pytest.fixture
def de_adata():
    """simulate_counts (8 x 200) with symbols (a few missing), log-CPM, a DESeq2 and an NB-VAE result."""
    adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=200, random_state=0)
    symbols = pd.Series([f"Sym{i}" for i in range(adata.n_vars)], index=adata.var_names, dtype=object)
    symbols.iloc[[10, 11]] = ["", np.nan]
    adata.var["symbol"] = symbols
    gdx.pp.log_cpm(adata)
    add_deseq2(adata)
    add_nbvae_de(adata)
    return adata


def _check_texts(ax, texts=None, *, inside=True):
    from matplotlib.text import Text

    """Draw the figure; assert the texts lie inside the axes and their boxes do not overlap. Returns the boxes."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = list(ax.texts) if texts is None else list(texts)
    boxes = [Text.get_window_extent(t, renderer) for t in texts]  # the text only, not its leader line
    frame = ax.get_window_extent(renderer)
    for t, b in zip(texts, boxes, strict=True):
        if inside:
            assert frame.x0 - 0.5 <= b.x0 and b.x1 <= frame.x1 + 0.5, (t.get_text(), b, frame)
            assert frame.y0 - 0.5 <= b.y0 and b.y1 <= frame.y1 + 0.5, (t.get_text(), b, frame)
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            w = min(a.x1, b.x1) - max(a.x0, b.x0)
            h = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert w <= 0.5 or h <= 0.5, (texts[i].get_text(), texts[j].get_text())
    return boxes


@pytest.fixture
def check_texts():
    """``check_texts(ax, texts=None)``: labels inside the axes, no two label boxes overlapping."""
    return _check_texts
