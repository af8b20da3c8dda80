from __future__ import annotations

import numpy as np
import pytest

import gendex as gdx
from gendex.pl._heatmap import _heatmap_data


def test_heatmap_data_selects_half_up_half_down(de_adata):
    data = _heatmap_data(de_adata, "deseq2", n_genes=11, layer="log_cpm")
    stat = de_adata.varm["deseq2"]["stat"]
    assert data.shape == (11, de_adata.n_obs)
    up, down = stat.nlargest(6), stat.nsmallest(5)
    assert list(data.index) == list(up.index) + list(down.index[::-1])
    assert (stat[data.index].diff().dropna() <= 0).all()  # ordered by signed stat
    # row z-scores of the layer, not recomputed statistics
    x = de_adata[data.columns, data.index].layers["log_cpm"].T
    expected = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, ddof=1, keepdims=True)
    np.testing.assert_allclose(data.to_numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(data.mean(axis=1), 0, atol=1e-12)


def test_heatmap_groups_samples(de_adata):
    de_adata.obs["condition"] = de_adata.obs["condition"].cat.reorder_categories(["B", "A"])
    data = _heatmap_data(de_adata, "deseq2", n_genes=4, groupby="condition")
    groups = de_adata.obs.loc[data.columns, "condition"].astype(str).tolist()
    assert groups == ["B"] * 4 + ["A"] * 4
    # default: the factor of the stored contrast
    default = _heatmap_data(de_adata, "deseq2", n_genes=4)
    assert list(default.columns) == list(data.columns)
    with pytest.raises(KeyError, match="available columns"):
        _heatmap_data(de_adata, "deseq2", groupby="celltype")


def test_heatmap_alpha_restricts_genes(de_adata):
    padj = de_adata.varm["deseq2"]["padj"]
    stat = de_adata.varm["deseq2"]["stat"]
    data = _heatmap_data(de_adata, "deseq2", n_genes=200, alpha=0.05)
    eligible = (padj < 0.05) & stat.notna() & (stat != 0)
    assert set(data.index) == set(stat.index[eligible])


def test_heatmap_artists(de_adata):
    ax = gdx.pl.heatmap(de_adata, "deseq2", n_genes=6, groupby="condition")
    data = _heatmap_data(de_adata, "deseq2", n_genes=6, groupby="condition")
    image = ax.images[0]
    np.testing.assert_allclose(image.get_array(), data.to_numpy())
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"Sym{int(g[-5:])}" for g in data.index]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(data.columns)
    assert image.colorbar is not None and image.colorbar.ax.get_ylabel() == "row z-score of log2-CPM"
    assert ax.get_title() == "DESeq2: B vs A\ntop 6 genes by stat"
    top = ax.child_axes[0]
    assert [t.get_text() for t in top.get_xticklabels()] == ["A", "B"]
    assert all(t.get_rotation() == 0 for t in top.get_xticklabels())  # short labels stay horizontal


def test_heatmap_short_sample_labels(de_adata):
    """Column labels use the rule every plot uses (MCL1-DG, not MCL1-DG_BC2CTUACXX_ACTTGA_L002_R1)."""
    de_adata.obs_names = [f"MCL1-D{c}_BC2CTUACXX_ACTTGA_L002_R1" for c in "GHIJKLMN"]
    de_adata.obs["name"] = [f"mouse {i}" for i in range(de_adata.n_obs)]
    data = _heatmap_data(de_adata, "deseq2", n_genes=4)
    ax = gdx.pl.heatmap(de_adata, "deseq2", n_genes=4)
    short = {f"MCL1-D{c}_BC2CTUACXX_ACTTGA_L002_R1": f"MCL1-D{c}" for c in "GHIJKLMN"}
    assert [t.get_text() for t in ax.get_xticklabels()] == [short[s] for s in data.columns]
    by_column = gdx.pl.heatmap(de_adata, "deseq2", n_genes=4, labels="name")
    assert [t.get_text() for t in by_column.get_xticklabels()] == de_adata.obs.loc[data.columns, "name"].tolist()
    full = gdx.pl.heatmap(de_adata, "deseq2", n_genes=4, labels=False)
    assert [t.get_text() for t in full.get_xticklabels()] == list(data.columns)
    with pytest.raises(KeyError, match="available columns"):
        gdx.pl.heatmap(de_adata, "deseq2", labels="mouse")


def test_heatmap_reads_a_vst_layer(de_adata):
    de_adata.layers["vst"] = np.log2(de_adata.layers["counts"] + 1.0)
    ax = gdx.pl.heatmap(de_adata, "deseq2", n_genes=4, layer="vst")
    data = _heatmap_data(de_adata, "deseq2", n_genes=4, layer="vst")
    np.testing.assert_allclose(ax.images[0].get_array(), data.to_numpy())
    assert ax.images[0].colorbar.ax.get_ylabel() == "row z-score of VST"


def test_heatmap_long_group_labels_are_turned_upright(de_adata):
    # four groups of two samples with long names: horizontal labels would run into each other
    de_adata.obs["group"] = [f"a_rather_long_group_name_{i // 2}" for i in range(de_adata.n_obs)]
    ax = gdx.pl.heatmap(de_adata, "deseq2", n_genes=6, groupby="group")
    top = ax.child_axes[0]
    assert len(top.get_xticklabels()) == 4
    assert all(t.get_rotation() == 90 for t in top.get_xticklabels())


def test_heatmap_missing_layer_names_the_pp_function(de_adata, unchanged):
    check = unchanged(de_adata)
    with pytest.raises(KeyError, match=r"gdx\.pp\.log2_normalize\(adata\)"):
        gdx.pl.heatmap(de_adata, "deseq2", layer="log2")
    with pytest.raises(KeyError, match=r"gdx\.pp\.log_cpm\(adata\).*available layers: \['counts', 'log_cpm'\]"):
        gdx.pl.heatmap(de_adata, "deseq2", layer="my_layer")
    with pytest.raises(KeyError, match="available"):
        gdx.pl.heatmap(de_adata, "limma")
    with pytest.raises(ValueError, match="n_genes"):
        gdx.pl.heatmap(de_adata, "deseq2", n_genes=1)
    check()
