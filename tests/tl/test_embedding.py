import warnings

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import gendex as gdx


@pytest.fixture
def lcpm(adata):
    gdx.pp.log_cpm(adata)
    return adata


def test_mds_slots_and_h5ad_roundtrip(lcpm, tmp_path):
    gdx.tl.mds(lcpm, n_top_genes=50, n_comps=3)
    assert lcpm.obsm["X_mds"].shape == (8, 3)
    d = lcpm.obsp["mds_distances"]
    assert d.shape == (8, 8) and np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
    rec = lcpm.uns["mds"]
    params = {"layer": "log_cpm", "n_top_genes": 50, "n_comps": 3, "gene_selection": "pairwise", "n_genes": 200}
    assert rec["params"] == params
    ratio = rec["variance_ratio"]
    assert ratio.shape == (3,) and np.all(np.diff(ratio) <= 0) and 0 < ratio.sum() <= 1
    assert rec["axis_label"] == "Leading logFC dim"
    lcpm.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_allclose(back.obsm["X_mds"], lcpm.obsm["X_mds"])
    np.testing.assert_allclose(back.obsp["mds_distances"], d)
    np.testing.assert_allclose(back.uns["mds"]["variance_ratio"], ratio)
    assert back.uns["mds"]["params"]["n_top_genes"] == 50


def test_mds_distances_are_the_leading_logfc_of_the_layer(lcpm):
    gdx.tl.mds(lcpm, n_top_genes=20)
    x = lcpm.layers["log_cpm"]
    i, j = 2, 6
    lfc2 = np.sort((x[i] - x[j]) ** 2)[-20:]
    assert np.isclose(lcpm.obsp["mds_distances"][i, j], np.sqrt(lfc2.mean()))
    # two dimensions approximate the distances (the leading ones explain most of them)
    c = lcpm.obsm["X_mds"]
    assert np.linalg.norm(c[i] - c[j]) <= lcpm.obsp["mds_distances"][i, j] + 1e-9


def test_mds_with_all_genes_equals_pca(lcpm):
    """With top >= n_genes every pair uses every gene: the distances are Euclidean / sqrt(n_genes), so classical
    MDS is PCA (the same variance shares, coordinates scaled by 1/sqrt(n_genes))."""
    gdx.tl.mds(lcpm, n_top_genes=10_000, n_comps=3)
    gdx.tl.pca(lcpm, n_comps=3)
    np.testing.assert_allclose(lcpm.uns["mds"]["variance_ratio"], lcpm.uns["pca"]["variance_ratio"], rtol=1e-10)
    np.testing.assert_allclose(
        np.abs(lcpm.obsm["X_mds"]), np.abs(lcpm.obsm["X_pca"]) / np.sqrt(lcpm.n_vars), rtol=1e-8, atol=1e-10
    )


def test_mds_separates_simulated_groups():
    a = gdx.datasets.simulate_counts(n_samples=8, n_genes=2000, frac_de=0.3, random_state=4)
    gdx.pp.log_cpm(a)
    gdx.tl.mds(a)
    dim1 = a.obsm["X_mds"][:, 0]
    grp = (a.obs["condition"] == "B").to_numpy()
    assert dim1[grp].max() < dim1[~grp].min() or dim1[~grp].max() < dim1[grp].min()


def test_mds_custom_key_copy_and_x(lcpm):
    lcpm.X = lcpm.layers["log_cpm"].copy()
    out = gdx.tl.mds(lcpm, layer=None, key_added="X_mds_x", copy=True)
    assert "X_mds_x" in out.obsm and "mds_x" in out.uns and "mds_x_distances" in out.obsp
    assert "X_mds_x" not in lcpm.obsm and "mds_x" not in lcpm.uns
    assert out.uns["mds_x"]["params"]["layer"] == "X"


def test_mds_and_pca_sparse_equals_dense(lcpm):
    sp = lcpm.copy()
    sp.layers["log_cpm"] = sparse.csr_matrix(sp.layers["log_cpm"])
    for a in (lcpm, sp):
        gdx.tl.mds(a)
        gdx.tl.pca(a, n_comps=3)
    np.testing.assert_allclose(sp.obsm["X_mds"], lcpm.obsm["X_mds"])
    np.testing.assert_allclose(sp.obsm["X_pca"], lcpm.obsm["X_pca"])


def test_mds_leaves_out_non_finite_genes_like_limma(lcpm):
    ref = lcpm[:, 1:].copy()
    lcpm.layers["log_cpm"][3, 0] = -np.inf
    gdx.tl.mds(lcpm, n_top_genes=30)
    gdx.tl.mds(ref, n_top_genes=30)
    np.testing.assert_allclose(lcpm.obsm["X_mds"], ref.obsm["X_mds"])
    assert lcpm.uns["mds"]["params"]["n_genes"] == 199


def test_pca_slots_and_h5ad_roundtrip(lcpm, tmp_path):
    gdx.tl.pca(lcpm)
    n = 7  # default: min(50, n_samples - 1, n_genes)
    assert lcpm.obsm["X_pca"].shape == (8, n)
    assert lcpm.varm["PCs"].shape == (200, n)
    rec = lcpm.uns["pca"]
    assert rec["params"] == {"layer": "log_cpm", "n_comps": n, "n_top_genes": -1, "varm_key": "PCs"}
    np.testing.assert_allclose(rec["variance_ratio"].sum(), 1.0)  # n - 1 components carry all the variance
    np.testing.assert_allclose(lcpm.obsm["X_pca"].var(axis=0, ddof=1), rec["variance"])
    lcpm.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_allclose(back.varm["PCs"], lcpm.varm["PCs"])
    np.testing.assert_allclose(back.uns["pca"]["variance_ratio"], rec["variance_ratio"])


def test_pca_top_genes(lcpm):
    gdx.tl.pca(lcpm, n_comps=2, n_top_genes=50, key_added="X_pca50")
    pcs = lcpm.varm["PCs_pca50"]
    used = np.abs(pcs).sum(axis=1) > 0
    assert used.sum() == 50
    var = lcpm.layers["log_cpm"].var(axis=0, ddof=1)
    assert var[used].min() >= var[~used].max()
    assert lcpm.uns["pca50"]["params"]["n_top_genes"] == 50


@pytest.mark.parametrize(
    ("call", "err", "match"),
    [
        (lambda a: gdx.tl.mds(a, layer="vst"), KeyError, r"`adata.layers\['vst'\]` not found"),
        (lambda a: gdx.tl.mds(a, n_comps=8), ValueError, r"n_comps.*\[1, n_samples - 1 = 7\]"),
        (lambda a: gdx.tl.mds(a, n_top_genes=0), ValueError, "n_top_genes"),
        (lambda a: gdx.tl.pca(a, n_comps=8), ValueError, r"n_comps.*\[1, 7\]"),
        (lambda a: gdx.tl.pca(a, n_top_genes=1), ValueError, "n_top_genes"),
        (lambda a: gdx.tl.pca(a, layer="vst"), KeyError, "vst"),
    ],
)
def test_bad_arguments_leave_adata_unchanged(lcpm, unchanged, call, err, match):
    check = unchanged(lcpm)
    with pytest.raises(err, match=match):
        call(lcpm)
    check()


def test_missing_log_cpm_layer_hints_at_pp_log_cpm(adata, unchanged):
    check = unchanged(adata)
    with pytest.raises(KeyError, match=r"gdx.pp.log_cpm"):
        gdx.tl.mds(adata)
    check()


def test_pca_refuses_non_finite(lcpm, unchanged):
    lcpm.layers["log_cpm"][0, 0] = np.nan
    check = unchanged(lcpm)
    with pytest.raises(ValueError, match="non-finite values in 1 gene"):
        gdx.tl.pca(lcpm)
    check()


def test_identical_samples(unchanged):
    a = gdx.datasets.simulate_counts(n_samples=4, n_genes=50, random_state=0)
    a.layers["log_cpm"] = np.tile(np.linspace(0, 5, 50), (4, 1))
    check = unchanged(a)
    with pytest.raises(ValueError, match="identical"):
        gdx.tl.mds(a)
    with pytest.raises(ValueError, match="no variance"):
        gdx.tl.pca(a)
    check()


def test_mds_old_argument_names_still_work_with_a_warning(lcpm):
    new = gdx.tl.mds(lcpm, n_top_genes=30, n_comps=3, copy=True)
    with pytest.warns(FutureWarning, match="n_top_genes"):
        old = gdx.tl.mds(lcpm, top=30, n_comps=3, copy=True)
    with pytest.warns(FutureWarning, match="n_comps"):
        old2 = gdx.tl.mds(lcpm, n_top_genes=30, n_components=3, copy=True)
    np.testing.assert_array_equal(old.obsm["X_mds"], new.obsm["X_mds"])
    np.testing.assert_array_equal(old2.obsm["X_mds"], new.obsm["X_mds"])


def test_key_added_names_the_embedding_with_or_without_x_prefix(lcpm):
    a = gdx.tl.pca(lcpm, n_comps=2, key_added="pca", copy=True)
    b = gdx.tl.pca(lcpm, n_comps=2, key_added="X_pca", copy=True)
    np.testing.assert_array_equal(a.obsm["X_pca"], b.obsm["X_pca"])
    c = gdx.tl.mds(lcpm, key_added="mine", copy=True)
    assert "X_mine" in c.obsm and c.uns["mine"]["method"] == "mds" and "mine" not in c.obsm


def test_pca_and_mds_load_a_dask_layer_equal_to_memory_and_warn_when_large(lcpm, monkeypatch):
    da = pytest.importorskip("dask.array")
    from gendex.tl import _embedding

    lazy = lcpm.copy()
    lazy.layers["log_cpm"] = da.from_array(lcpm.layers["log_cpm"], chunks=(4, 50))
    for func in (gdx.tl.pca, gdx.tl.mds):
        func(lcpm)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # small: loaded without a word
            func(lazy)
    np.testing.assert_array_equal(lazy.obsm["X_pca"], lcpm.obsm["X_pca"])
    np.testing.assert_array_equal(lazy.obsm["X_mds"], lcpm.obsm["X_mds"])
    monkeypatch.setattr(_embedding, "LOAD_WARN_BYTES", 8 * 8 * 200 - 1)  # one byte less than the layer
    for func in (gdx.tl.pca, gdx.tl.mds):
        with pytest.warns(UserWarning, match=r"load `adata.layers\['log_cpm'\]` into memory .*gene subset"):
            func(lazy)
