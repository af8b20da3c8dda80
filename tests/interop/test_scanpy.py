"""scanpy reads what gendex writes: embeddings through ``sc.pl.embedding``/``sc.get.obs_df``, DE tables as frames."""

import matplotlib

matplotlib.use("agg")

import numpy as np
import pytest

import gendex as gdx

sc = pytest.importorskip("scanpy", reason="scanpy is a test extra (pip install -e '.[test]')")


@pytest.fixture
def adata():
    adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=200, random_state=0)
    gdx.pp.log_cpm(adata)
    gdx.tl.pca(adata, n_comps=3)
    gdx.tl.mds(adata, n_comps=3)
    return adata


@pytest.mark.parametrize(("basis", "key"), [("pca", "X_pca"), ("mds", "X_mds")])
def test_sc_pl_embedding_draws_the_stored_coordinates(adata, basis, key):
    ax = sc.pl.embedding(adata, basis=basis, color="condition", components="2,3", show=False)
    offsets = np.concatenate([c.get_offsets() for c in ax.collections])
    expected = adata.obsm[key][:, [1, 2]]
    assert sorted(map(tuple, np.round(offsets, 10))) == sorted(map(tuple, np.round(expected, 10)))
    matplotlib.pyplot.close("all")


def test_sc_get_obs_df_reads_embeddings_and_obs(adata):
    df = sc.get.obs_df(adata, keys=["condition"], obsm_keys=[("X_pca", 0), ("X_mds", 1)])
    np.testing.assert_array_equal(df["X_pca-0"], adata.obsm["X_pca"][:, 0])
    np.testing.assert_array_equal(df["X_mds-1"], adata.obsm["X_mds"][:, 1])


def test_sc_get_var_df_reads_a_de_column(adata):
    gdx.tl.deseq2(adata, design="~condition", contrast=["condition", "B", "A"])
    df = sc.get.var_df(adata, varm_keys=[("deseq2", "log2FoldChange")])
    np.testing.assert_array_equal(df["deseq2-log2FoldChange"], adata.varm["deseq2"]["log2FoldChange"])
