from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

import gendex as gdx
from gendex.pl._compare import _lfc_scatter_data, _na_genes_data

KEY = "compare_deseq2_vs_nbvae_de"


@pytest.fixture
def compared(de_adata):
    gdx.tl.compare_de(de_adata, "deseq2", "nbvae_de")
    return de_adata


def test_lfc_scatter_data(compared):
    data = _lfc_scatter_data(compared, KEY)
    assert len(data) == 200 - 2  # the all-zero genes have no DESeq2 log2FC
    assert (data.loc[compared.var_names[2:9], "category"] == "untested").all()  # padj NA in DESeq2
    table = compared.uns[KEY]["table"]
    assert (data["category"] == "both").sum() == (table["category"] == "both").sum() > 0
    assert data.loc["gene_00020", "label"] == "Sym20"


def test_lfc_scatter_artists(compared):
    ax = gdx.pl.lfc_scatter(compared, KEY)
    data = _lfc_scatter_data(compared, KEY)
    summary = compared.uns[KEY]["summary"]
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(data)
    both = [c for c in ax.collections if c.get_label().startswith("significant in both")][0]
    assert len(both.get_offsets()) == summary["n_sig_both"]
    np.testing.assert_allclose(both.get_facecolor()[0], to_rgba("#0072B2"))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"significant in both ({summary['n_sig_both']})" in legend
    assert "identity" in legend
    identity = [ln for ln in ax.lines if ln.get_label() == "identity"][0]
    np.testing.assert_allclose(identity.get_xdata(), identity.get_ydata())
    fit = [ln for ln in ax.lines if ln.get_label().startswith("least squares")][0]
    x, y = fit.get_xdata(), fit.get_ydata()
    assert (y[1] - y[0]) / (x[1] - x[0]) == pytest.approx(summary["slope"])
    assert f"Pearson r = {summary['pearson']:.3f}" in ax.get_title()
    assert ax.get_xlabel() == "log2 fold change (DESeq2)"
    assert ax.get_ylabel() == "log2 fold change (NB-VAE generative DE)"
    assert ax.get_title().startswith("DESeq2 vs NB-VAE generative DE: B vs A\n")


def test_lfc_scatter_colours_are_colour_blind_safe(compared):
    """The concordance categories are Okabe-Ito colours: no two alike (DESeq2 blue vs purple was the bug)."""
    from matplotlib.colors import to_rgb

    ax = gdx.pl.lfc_scatter(compared, KEY)
    colours = [to_rgb(c.get_facecolor()[0]) for c in ax.collections]
    assert len(set(colours)) == len(colours)
    okabe_ito = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"}
    assert {c for c in colours if c != to_rgb("#bdbdbd")} <= {to_rgb(c) for c in okabe_ito}


def test_lfc_scatter_bad_key(compared):
    with pytest.raises(KeyError, match=r"compare_de.*available: \['compare_deseq2_vs_nbvae_de'\]"):
        gdx.pl.lfc_scatter(compared, "deseq2")


def test_na_genes_data_groups_by_reason(compared):
    data = _na_genes_data(compared, KEY)
    assert list(data["group"].cat.categories) == [
        "tested by DESeq2",
        "NA in DESeq2: all_zero",
        "NA in DESeq2: cooks_outlier",
        "NA in DESeq2: independent_filtering",
    ]
    counts = data["group"].value_counts()
    assert counts["tested by DESeq2"] == 191
    assert counts["NA in DESeq2: cooks_outlier"] == 3 and counts["NA in DESeq2: all_zero"] == 2
    t2 = compared.varm["nbvae_de"]
    np.testing.assert_allclose(data["lfc2"], t2.loc[data.index, "log2FoldChange"])
    np.testing.assert_allclose(data["width"], (t2["lfc_upper"] - t2["lfc_lower"]).loc[data.index])
    merged = _na_genes_data(compared, KEY, split_reason=False)
    assert list(merged["group"].cat.categories) == ["tested by DESeq2", "NA in DESeq2"]
    assert merged["group"].value_counts()["NA in DESeq2"] == 9


def test_na_genes_two_panels_with_intervals(compared):
    fig = gdx.pl.na_genes(compared, KEY)
    assert len(fig.axes) == 2
    ax_lfc, ax_width = fig.axes
    data = _na_genes_data(compared, KEY)
    assert sum(len(c.get_offsets()) for c in ax_lfc.collections) == len(data)
    ticks = [t.get_text() for t in ax_lfc.get_xticklabels()]
    assert ticks[0] == "tested by\nDESeq2\n(n = 191)"
    assert ticks[2] == "NA in DESeq2:\ncooks outlier\n(n = 3)"
    assert ticks[3] == "NA in DESeq2:\nindependent\nfiltering\n(n = 4)"
    assert ax_width.get_ylabel() == "90% credible interval width (log2 fold change)"
    pts = np.concatenate([c.get_offsets()[:, 1] for c in ax_width.collections])
    np.testing.assert_allclose(np.sort(pts), np.sort(data["width"]))


def test_na_genes_single_panel(compared):
    _fig, ax = plt.subplots()
    out = gdx.pl.na_genes(compared, KEY, show_width=False, ax=ax)
    assert out is ax
    assert ax.get_ylabel() == "log2 fold change (NB-VAE generative DE)"
    with pytest.raises(ValueError, match="2 Axes"):
        gdx.pl.na_genes(compared, KEY, ax=ax)
    gdx.tl.compare_de(compared, "nbvae_de", "deseq2", key_added="rev")
    with pytest.raises(KeyError, match="lfc_lower"):
        gdx.pl.na_genes(compared, "rev", show_width=True)
    rev = gdx.pl.na_genes(compared, "rev")  # the NB-VAE leaves no gene NA
    assert rev.texts[0].get_text().startswith("no NA genes: NB-VAE generative DE tested all")


def test_na_genes_says_when_there_is_none(compared):
    """DESeq2 left no gene NA: a sentence instead of a box over one category."""
    table = compared.varm["deseq2"].copy()
    table["padj"] = table["padj"].fillna(0.5)
    table["pvalue"] = table["pvalue"].fillna(0.5)
    table["log2FoldChange"] = table["log2FoldChange"].fillna(0.0)
    compared.varm["deseq2"] = table
    gdx.tl.compare_de(compared, "deseq2", "nbvae_de", key_added="full")
    ax = gdx.pl.na_genes(compared, "full")
    assert not ax.axison and len(ax.collections) == 0 and len(ax.patches) == 0
    assert [t.get_text() for t in ax.texts] == [
        f"no NA genes: DESeq2 tested all {compared.n_vars} genes\nthat NB-VAE generative DE estimated"
    ]


def test_plots_only_read(compared, unchanged):
    check = unchanged(compared)
    table = compared.uns[KEY]["table"].copy()
    varm = {k: compared.varm[k].copy() for k in compared.varm}
    gdx.pl.volcano(compared)
    gdx.pl.md(compared, "nbvae_de")
    gdx.pl.pvalue_hist(compared)
    gdx.pl.heatmap(compared, n_genes=10)
    gdx.pl.lfc_scatter(compared, KEY)
    gdx.pl.na_genes(compared, KEY)
    check()
    pd.testing.assert_frame_equal(compared.uns[KEY]["table"], table)
    for k, v in varm.items():
        pd.testing.assert_frame_equal(compared.varm[k], v)
