import matplotlib.pyplot as plt
import numpy as np
import pytest

import gendex as gdx
from gendex.pl._embedding import _embedding_data
from gendex.pl._labels import short_names


@pytest.fixture
def emb(adata):
    gdx.pp.log_cpm(adata)
    gdx.tl.mds(adata, n_comps=3)
    gdx.tl.pca(adata, n_comps=4)
    return adata


def test_mds_data_reads_what_tl_stored(emb):
    emb.obs_names = [f"S{i}_lane1_R1" for i in range(emb.n_obs)]
    df, (xl, yl) = _embedding_data(emb, "X_mds", components=(1, 3), color="condition", labels=True)
    np.testing.assert_array_equal(df["x"], emb.obsm["X_mds"][:, 0])
    np.testing.assert_array_equal(df["y"], emb.obsm["X_mds"][:, 2])
    ratio = emb.uns["mds"]["variance_ratio"]
    assert xl == f"Leading logFC dim 1 ({round(100 * ratio[0])}%)"
    assert yl == f"Leading logFC dim 3 ({round(100 * ratio[2])}%)"
    assert list(df["label"]) == [f"S{i}" for i in range(emb.n_obs)]  # the short sample names
    assert list(df["condition"]) == list(emb.obs["condition"])


def test_pca_data_axis_labels(emb):
    df, (xl, yl) = _embedding_data(emb, "pca", components=(2, 4))
    ratio = emb.uns["pca"]["variance_ratio"]
    assert (xl, yl) == (f"PC2 ({round(100 * ratio[1])}%)", f"PC4 ({round(100 * ratio[3])}%)")
    np.testing.assert_array_equal(df["y"], emb.obsm["X_pca"][:, 3])


def test_plots_do_not_recompute(emb):
    emb.obsm["X_mds"] = emb.obsm["X_mds"] * 0 + 7.0  # whatever is stored is what is drawn
    df, _ = _embedding_data(emb, "X_mds")
    assert (df[["x", "y"]].to_numpy() == 7.0).all()


@pytest.mark.parametrize("plot", [gdx.pl.mds, gdx.pl.pca])
def test_scatter_artists(emb, plot, tmp_path, check_texts):
    ax = plot(emb, color="condition", labels=True, save=tmp_path / "p.png")
    collections = ax.collections
    assert len(collections) == 2  # one per condition level
    key = "X_mds" if plot is gdx.pl.mds else "X_pca"
    groups = emb.obs["condition"].to_numpy()
    for coll, level in zip(collections, ["A", "B"], strict=True):
        np.testing.assert_allclose(coll.get_offsets(), emb.obsm[key][groups == level][:, :2])
    assert collections[0].get_facecolor()[0].tolist() != collections[1].get_facecolor()[0].tolist()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B"]
    assert sorted(t.get_text() for t in ax.texts) == sorted(emb.obs_names)
    assert "%" in ax.get_xlabel() and "%" in ax.get_ylabel()
    assert ax.get_title() == ("MDS of log_cpm" if plot is gdx.pl.mds else "PCA of log_cpm")
    assert (tmp_path / "p.png").stat().st_size > 0
    check_texts(ax)  # sample labels inside the axes (not over the legend outside it), none over another


def test_pca_of_a_vst_layer_names_it(emb):
    emb.layers["vst"] = np.log2(emb.layers["counts"] + 1.0)
    gdx.tl.pca(emb, layer="vst", key_added="X_pca_vst")
    ax = gdx.pl.pca(emb, "X_pca_vst")
    np.testing.assert_allclose(ax.collections[0].get_offsets(), emb.obsm["X_pca_vst"][:, :2])
    assert ax.get_title() == "PCA of vst" and ax.get_xlabel().startswith("PC1 (")


def test_numeric_colour_and_given_ax(emb):
    fig, ax = plt.subplots()
    out = gdx.pl.mds(emb, color="true_size_factor", ax=ax)
    assert out is ax
    assert len(ax.collections) == 1 and len(fig.axes) == 2  # one scatter and its colour bar
    np.testing.assert_allclose(ax.collections[0].get_offsets(), emb.obsm["X_mds"][:, :2])


def test_missing_colour_values_are_drawn(emb):
    emb.obs["grp"] = emb.obs["condition"].astype(str).where(np.arange(emb.n_obs) != 0).astype("category")
    ax = gdx.pl.pca(emb, color="grp")
    assert sum(len(c.get_offsets()) for c in ax.collections) == emb.n_obs


@pytest.mark.parametrize(
    ("call", "err", "match"),
    [
        (lambda a: gdx.pl.mds(a, "X_umap"), KeyError, r"available: \['X_mds', 'X_pca'\]"),
        (lambda a: gdx.pl.embedding(a, "X_nbvae"), KeyError, r"gdx.tl.nbvae"),
        (lambda a: gdx.pl.mds(a, components=(1, 4)), ValueError, r"components.*1..3"),
        (lambda a: gdx.pl.pca(a, components=(0, 1)), ValueError, "components"),
        (lambda a: gdx.pl.pca(a, components=(2, 2)), ValueError, "components"),
        (lambda a: gdx.pl.mds(a, color="batch"), KeyError, r"`adata.obs\['batch'\]` not found"),
        (lambda a: gdx.pl.pca(a, labels="batch"), KeyError, r"`adata.obs\['batch'\]` not found"),
    ],
)
def test_errors_before_drawing(emb, call, err, match):
    with pytest.raises(err, match=match):
        call(emb)
    assert plt.get_fignums() == []


def test_without_uns_record_the_axes_have_no_percentages(emb):
    del emb.uns["mds"]
    ax = gdx.pl.mds(emb)
    assert ax.get_xlabel() == "mds 1"


def test_old_call_forms_warn_and_still_work(emb):
    with pytest.warns(FutureWarning, match=r"pl.mds\(dims=...\)"):
        ax = gdx.pl.mds(emb, dims=(1, 3))
    np.testing.assert_allclose(ax.collections[0].get_offsets(), emb.obsm["X_mds"][:, [0, 2]])
    with pytest.warns(FutureWarning, match=r"pl.pca\(key=...\)"):
        gdx.pl.pca(emb, key="X_pca")


def test_short_names_rule():
    long = ["MCL1-DG_BC2CTUACXX_ACTTGA_L002_R1", "MCL1-DH_BC2CTUACXX_CAGATC_L002_R1"]
    assert short_names(long) == ["MCL1-DG", "MCL1-DH"]
    assert short_names(["A_rep1", "A_rep2", "B_rep1"]) == ["A_rep1", "A_rep2", "B_rep1"]
    assert short_names(["a_x_1", "a_y_1"]) == ["a_x", "a_y"]
    assert short_names(["s1", "s2"]) == ["s1", "s2"]


def test_labels_of_close_pairs_do_not_overlap(emb, check_texts):
    """Replicate pairs drawn almost on top of each other (as on GSE60450): their labels stay apart."""
    xy = np.repeat(np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 2.0], [1.0, -2.0]]), 2, axis=0)
    emb.obsm["X_mds"] = np.column_stack([xy + 0.01 * np.arange(emb.n_obs)[:, None], np.zeros(emb.n_obs)])
    emb.obs_names = [f"MCL1-D{c}_BC2CTUACXX_L002_R1" for c in "GHIJKLMN"]
    ax = gdx.pl.mds(emb, color="condition", labels=True)
    assert sorted(t.get_text() for t in ax.texts) == [f"MCL1-D{c}" for c in "GHIJKLMN"]
    check_texts(ax)


def test_gse60450_mds_equals_limma(gse60450):
    """R 4.2.2, limma 3.54.1 / edgeR 3.40.2 on ../shared/data/gse60450:
    keep <- filterByExpr(counts, group=celltype); y <- counts[keep,]; lib <- colSums(y)
    l <- t(log2(t(y + 0.5)/(lib + 1) * 1e6)); m <- plotMDS(l, plot=FALSE)
    m$var.explained[1:2] = 0.6801522 0.1590481; cbind(m$x, m$y)[1:3,]
    """
    gdx.pp.filter_by_expr(gse60450, group="celltype")
    gdx.pp.log_cpm(gse60450)
    gdx.tl.mds(gse60450)
    np.testing.assert_allclose(gse60450.uns["mds"]["variance_ratio"], [0.6801522, 0.1590481], atol=5e-8)
    r_xy = np.array([[-3.200172, 0.9339691], [-3.262715, 0.8434436], [-3.270378, -0.2637162]])
    coords = gse60450.obsm["X_mds"][:3]
    signs = np.sign((coords * r_xy).sum(axis=0))
    np.testing.assert_allclose(coords * signs, r_xy, atol=5e-6)
    _, (xl, yl) = _embedding_data(gse60450, "X_mds")
    assert (xl, yl) == ("Leading logFC dim 1 (68%)", "Leading logFC dim 2 (16%)")
