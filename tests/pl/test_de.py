from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

import gendex as gdx
from gendex._utils import store_de_results
from gendex.pl._de import _md_data, _pvalue_hist_data, _volcano_data


def _n_points(ax):
    return sum(len(c.get_offsets()) for c in ax.collections)


def _collection(ax, prefix):
    hits = [c for c in ax.collections if str(c.get_label()).startswith(prefix)]
    assert len(hits) == 1, [c.get_label() for c in ax.collections]
    return hits[0]


def _tiny(padj, lfc, symbols=None):
    """An AnnData with a hand-made DE table (one gene per entry)."""
    import anndata as ad

    n = len(padj)
    adata = ad.AnnData(np.ones((3, n)), var=pd.DataFrame(index=[f"g{i}" for i in range(n)]))
    if symbols is not None:
        adata.var["symbol"] = symbols
    df = pd.DataFrame(
        {"baseMean": 10.0, "log2FoldChange": lfc, "stat": np.sign(lfc), "pvalue": padj, "padj": padj},
        index=adata.var_names,
    )
    store_de_results(adata, "deseq2", df, method="deseq2", params={})
    return adata


# ------------------------------------------------------------------------------------------------- volcano


def test_volcano_data_directions_and_labels(de_adata):
    data = _volcano_data(de_adata, "deseq2", alpha=0.05, lfc_threshold=1.0, n_labels=5)
    table = de_adata.varm["deseq2"]
    finite = table["log2FoldChange"].notna() & table["padj"].notna()
    assert len(data) == finite.sum() == 200 - 9
    assert list(data.index) == list(table.index[finite])
    sig = finite & (table["padj"] < 0.05) & (table["log2FoldChange"].abs() >= 1.0)
    assert (data["direction"] == "up").sum() == (sig & (table["log2FoldChange"] > 0)).sum()
    assert (data["direction"] == "down").sum() == (sig & (table["log2FoldChange"] < 0)).sum()
    assert (data["direction"] != "ns").sum() > 5
    np.testing.assert_allclose(data["neg_log10"], -np.log10(table.loc[finite, "padj"]))
    expected = table.loc[sig, "padj"].nsmallest(5).index
    assert set(data.index[data["labelled"]]) == set(expected)
    assert data.loc[expected, "label"].tolist() == [f"Sym{int(g[-5:])}" for g in expected]
    assert data.attrs["rule"] == "padj < 0.05, |log2FC| \u2265 1"


def test_volcano_counts_match_the_table_and_md(de_adata, check_texts):
    """The default volcano calls exactly the genes with padj < alpha: the MD plot's and the table's counts."""
    table = de_adata.varm["deseq2"].copy()
    table.iloc[[20, 21, 30], table.columns.get_loc("padj")] = 0.0  # drawn apart at the top, still counted
    table.iloc[[20, 21, 30], table.columns.get_loc("log2FoldChange")] = [2.0, 3.0, -2.0]
    de_adata.varm["deseq2"] = table
    ax = gdx.pl.volcano(de_adata, "deseq2", n_labels=12)
    assert any(c.get_label() == "padj = 0, drawn at the top (3, counted above)" for c in ax.collections)
    sig = table["padj"] < 0.05
    n_up = int((sig & (table["log2FoldChange"] > 0)).sum())
    n_down = int((sig & (table["log2FoldChange"] < 0)).sum())
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"up ({n_up})" in texts and f"down ({n_down})" in texts
    assert ax.get_legend().get_title().get_text() == "padj < 0.05"
    md_texts = [t.get_text() for t in gdx.pl.md(de_adata, "deseq2").get_legend().get_texts()]
    assert f"up ({n_up})" in md_texts and f"down ({n_down})" in md_texts
    assert ax.get_title() == "DESeq2: B vs A"
    assert [ln for ln in ax.lines if ln.get_ydata()[0] == 0 and ln.get_ydata()[1] == 1] == []  # no |lfc| line
    check_texts(ax)  # gene labels inside the axes, not over each other (nor the legend, outside the axes)
    assert len(ax.texts) == 12


def test_volcano_artists(de_adata, check_texts):
    ax = gdx.pl.volcano(de_adata, "deseq2", n_labels=4, lfc_threshold=1.0)
    data = _volcano_data(de_adata, "deseq2", n_labels=4, lfc_threshold=1.0)
    assert _n_points(ax) == len(data)
    up = _collection(ax, "up")
    assert len(up.get_offsets()) == (data["direction"] == "up").sum()
    np.testing.assert_allclose(up.get_facecolor()[0], to_rgba("#d62728"))
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(data.loc[data["labelled"], "label"])
    assert len(texts) == 4
    hlines = [ln.get_ydata()[0] for ln in ax.lines if ln.get_xdata()[0] == 0 and ln.get_xdata()[1] == 1]
    vlines = sorted(ln.get_xdata()[0] for ln in ax.lines if ln.get_ydata()[0] == 0 and ln.get_ydata()[1] == 1)
    np.testing.assert_allclose(hlines, [-np.log10(0.05)])
    np.testing.assert_allclose(vlines, [-1.0, 1.0])
    assert ax.get_xlabel() == "log2 fold change"
    assert ax.get_ylabel() == "-log10 adjusted p-value"
    assert "|log2FC| \u2265 1" in ax.get_legend().get_title().get_text()  # the extra threshold is stated
    check_texts(ax)


def test_volcano_raw_pvalue_axis(de_adata):
    table = de_adata.varm["deseq2"]
    ax = gdx.pl.volcano(de_adata, "deseq2", y="pvalue", n_labels=0)
    data = _volcano_data(de_adata, "deseq2", y="pvalue", call="pvalue")
    ok = table["log2FoldChange"].notna() & table["pvalue"].notna()
    assert len(data) == ok.sum()
    np.testing.assert_allclose(data["neg_log10"], -np.log10(table.loc[ok, "pvalue"]))
    n_up = int(((table["pvalue"] < 0.05) & (table["log2FoldChange"] > 0)).sum())
    assert f"up ({n_up})" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_ylabel() == "-log10 p-value"
    assert ax.get_legend().get_title().get_text() == "p < 0.05"
    # raw p on the axis, calls on padj: the legend says padj, no p = alpha line (it would mean something else)
    ax2 = gdx.pl.volcano(de_adata, "deseq2", y="pvalue", call="padj")
    assert ax2.get_legend().get_title().get_text() == "padj < 0.05"
    assert [ln for ln in ax2.lines if ln.get_xdata()[0] == 0 and ln.get_xdata()[1] == 1] == []
    with pytest.raises(ValueError, match="`y` must be"):
        gdx.pl.volcano(de_adata, y="qvalue")


def test_volcano_labels_stay_apart_when_crowded(check_texts):
    """Twenty genes at nearly the same point: every label inside the axes, none over another."""
    padj = np.r_[np.full(20, 1e-8) * np.linspace(1, 1.1, 20), np.full(30, 0.5)]
    lfc = np.r_[np.linspace(4.0, 4.05, 20), np.linspace(-1, 1, 30)]
    adata = _tiny(padj=padj, lfc=lfc, symbols=[f"GeneName{i}" for i in range(50)])
    ax = gdx.pl.volcano(adata, "deseq2", n_labels=20)
    assert len(ax.texts) == 20
    check_texts(ax)


def test_volcano_labels_fall_back_to_var_names_and_clips_zero():
    adata = _tiny(padj=[0.0, 1e-5, 0.5, np.nan, 0.01], lfc=[3.0, -2.0, 0.1, 1.0, 0.5], symbols=["A", "", "C", "D", "E"])
    data = _volcano_data(adata, "deseq2", lfc_threshold=1.0, n_labels=10)
    assert list(data.index) == ["g0", "g1", "g2", "g4"]
    assert data.loc["g0", "clipped"] and not data["clipped"].iloc[1:].any()
    assert data.loc["g0", "neg_log10"] == pytest.approx(5.0)  # clipped to the smallest positive padj
    assert data["direction"].tolist() == ["up", "down", "ns", "ns"]  # g4: padj < alpha but |lfc| < 1
    assert data.loc[data["labelled"], "label"].tolist() == ["A", "g1"]  # empty symbol -> var_name

    del adata.var["symbol"]
    ax = gdx.pl.volcano(adata, "deseq2", n_labels=10, lfc_threshold=1.0)
    assert sorted(t.get_text() for t in ax.texts) == ["g0", "g1"]
    assert any(str(c.get_label()).startswith("padj = 0") for c in ax.collections)
    assert _n_points(ax) == 4


def test_volcano_uses_given_ax_and_saves(de_adata, tmp_path):
    fig, ax = plt.subplots()
    n_figs = len(plt.get_fignums())
    out = gdx.pl.volcano(de_adata, "nbvae_de", ax=ax, save=tmp_path / "v.png", palette={"up": "black"}, s=3)
    assert out is ax
    assert len(plt.get_fignums()) == n_figs
    assert (tmp_path / "v.png").stat().st_size > 0
    np.testing.assert_allclose(_collection(ax, "up").get_facecolor()[0], to_rgba("black"))
    np.testing.assert_allclose(_collection(ax, "up").get_sizes(), [3])


def test_volcano_bad_input(de_adata):
    with pytest.raises(KeyError, match=r"available: \['deseq2', 'nbvae_de'\]"):
        gdx.pl.volcano(de_adata, "edger")
    with pytest.raises(ValueError, match="alpha"):
        gdx.pl.volcano(de_adata, alpha=1.5)
    with pytest.raises(ValueError, match="lfc_threshold"):
        gdx.pl.volcano(de_adata, lfc_threshold=-1)
    with pytest.raises(TypeError, match="palette"):
        gdx.pl.volcano(de_adata, color="red")
    with pytest.raises(ValueError, match="palette"):
        gdx.pl.volcano(de_adata, palette={"sideways": "red"})


# ------------------------------------------------------------------------------------------------------ MD


def test_md_data_deseq2_uses_log10_basemean(de_adata):
    data = _md_data(de_adata, "deseq2", alpha=0.05)
    table = de_adata.varm["deseq2"]
    ok = table["log2FoldChange"].notna() & (table["baseMean"] > 0)
    assert list(data.index) == list(table.index[ok])  # Cook's outliers are kept (finite LFC, NA padj)
    np.testing.assert_allclose(data["mean"], np.log10(table.loc[ok, "baseMean"]))
    assert data.attrs["mean_label"].startswith("log10 mean")
    sig = table.loc[ok, "padj"] < 0.05
    assert (data["direction"] != "ns").sum() == sig.sum()
    assert (data.loc[data["direction"] == "up", "log2FoldChange"] > 0).all()


def test_md_limma_uses_aveexpr(de_adata):
    df = gdx.get.de_results(de_adata, "deseq2", gene_symbols=None).drop(columns="na_reason")
    df["AveExpr"] = np.linspace(-2, 12, len(df))
    df["baseMean"] = df["AveExpr"]
    store_de_results(de_adata, "limma_voom", df, method="limma_voom", params={})
    data = _md_data(de_adata, "limma_voom")
    np.testing.assert_allclose(data["mean"], df.loc[data.index, "AveExpr"])
    assert "AveExpr" in data.attrs["mean_label"]
    ax = gdx.pl.md(de_adata, "limma_voom")
    assert ax.get_xlabel() == data.attrs["mean_label"]
    with pytest.raises(ValueError, match="already log2-CPM"):
        _md_data(de_adata, "limma_voom", log_mean=True)


def test_md_artists(de_adata):
    ax = gdx.pl.md(de_adata, "deseq2", lfc_threshold=0.5)
    data = _md_data(de_adata, "deseq2", lfc_threshold=0.5)
    assert _n_points(ax) == len(data)
    down = _collection(ax, "down")
    assert len(down.get_offsets()) == (data["direction"] == "down").sum() > 0
    np.testing.assert_allclose(down.get_facecolor()[0], to_rgba("#1f77b4"))
    ys = sorted(ln.get_ydata()[0] for ln in ax.lines)
    np.testing.assert_allclose(ys, [-0.5, 0.0, 0.5])
    assert ax.get_ylabel() == "log2 fold change"
    assert ax.get_title() == "DESeq2: B vs A"
    assert ax.get_legend().get_title().get_text() == "padj < 0.05, |log2FC| \u2265 0.5"


# ---------------------------------------------------------------------------------------- p-value histogram


def test_pvalue_hist(de_adata):
    data = _pvalue_hist_data(de_adata, "deseq2", bins=10)
    n = de_adata.varm["deseq2"]["pvalue"].notna().sum()
    assert len(data) == 10 and data["count"].sum() == n == 200 - 5
    np.testing.assert_allclose(data["left"], np.arange(10) / 10)
    ax = gdx.pl.pvalue_hist(de_adata, "deseq2", bins=10)
    assert [p.get_height() for p in ax.patches] == data["count"].tolist()
    assert ax.lines[0].get_ydata()[0] == pytest.approx(n / 10)
    assert ax.get_xlabel() == "p-value"
    assert ax.get_title() == "DESeq2: B vs A (195 genes)"


def test_pvalue_hist_rejects_non_pvalues(de_adata):
    with pytest.raises(ValueError, match="outside"):
        _pvalue_hist_data(de_adata, "deseq2", column="log2FoldChange")
    with pytest.raises(KeyError, match="lacks the columns"):
        _pvalue_hist_data(de_adata, "deseq2", column="nope")
