from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

import gendex as gdx
from gendex.pl._nbvae import _latent_data, _latent_genes_data, _training_curve_data


@pytest.fixture
def nbvae_adata():
    """What tl.nbvae and tl.latent_path store (CONTRACTS.md), with made-up numbers."""
    adata = gdx.datasets.simulate_counts(n_samples=9, n_genes=30, n_groups=3, random_state=0)
    adata.var["symbol"] = [f"S{i}" for i in range(adata.n_vars)]
    adata.obs["celltype"] = pd.Categorical(["basal", "luminal", "stromal"] * 3)
    adata.obs["depth"] = np.linspace(1.0, 2.0, adata.n_obs)
    rng = np.random.default_rng(0)
    adata.obsm["X_nbvae"] = rng.normal(size=(adata.n_obs, 3))
    epochs = pd.RangeIndex(40, name="epoch")
    history = pd.DataFrame(
        {
            "elbo_train": 1000 / (1 + np.arange(40)),
            "reconstruction_loss_train": 900 / (1 + np.arange(40)),
            "kl_local_train": np.full(40, 5.0),
        },
        index=epochs,
    )
    history.loc[0, "kl_local_train"] = np.nan
    adata.uns["X_nbvae"] = {"params": {"n_latent": 3}, "history": history}
    t = np.linspace(0, 1, 11)
    genes = list(adata.var_names[:3])
    expression = pd.DataFrame({g: 10.0 * 2 ** (k * t) for k, g in enumerate(genes)})
    adata.uns["latent_path"] = {
        "params": {"start": [0.0, 0.0, 0.0], "end": [1.0, 1.0, 0.0], "start_label": "basal", "end_label": "luminal"},
        "t": t,
        "latent": np.outer(t, [1.0, 1.0, 0.0]),
        "expression": expression,
    }
    return adata


def test_latent_categorical(nbvae_adata):
    data = _latent_data(nbvae_adata, basis="X_nbvae", color="celltype", components=(0, 2))
    np.testing.assert_array_equal(data[["x", "y"]].to_numpy(), nbvae_adata.obsm["X_nbvae"][:, [0, 2]])
    nbvae_adata.uns["celltype_colors"] = ["#111111", "#222222", "#333333"]
    ax = gdx.pl.latent(nbvae_adata, basis="nbvae", color="celltype", annotate=True)
    assert [c.get_label() for c in ax.collections] == ["basal", "luminal", "stromal"]
    assert [len(c.get_offsets()) for c in ax.collections] == [3, 3, 3]
    np.testing.assert_allclose(ax.collections[1].get_facecolor()[0], to_rgba("#222222"))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["basal", "luminal", "stromal"]
    assert sorted(t.get_text() for t in ax.texts) == sorted(nbvae_adata.obs_names)
    assert ax.get_xlabel() == "nbvae latent dimension 1"


def test_latent_numeric_colorbar(nbvae_adata):
    _fig, ax = plt.subplots()
    out = gdx.pl.latent(nbvae_adata, color="depth", ax=ax)
    assert out is ax
    points = ax.collections[0]
    np.testing.assert_allclose(points.get_array(), nbvae_adata.obs["depth"])
    assert points.colorbar is not None and points.colorbar.ax.get_ylabel() == "depth"


def test_latent_bad_input(nbvae_adata):
    with pytest.raises(KeyError, match=r"available: \['X_nbvae'\]"):
        gdx.pl.latent(nbvae_adata, basis="X_pca")
    with pytest.raises(KeyError, match="available columns"):
        gdx.pl.latent(nbvae_adata, color="tissue")
    with pytest.raises(ValueError, match="components"):
        gdx.pl.latent(nbvae_adata, components=(0, 3))


def test_training_curve(nbvae_adata, tmp_path):
    path = tmp_path / "m.h5ad"
    nbvae_adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    data = _training_curve_data(back, "X_nbvae")
    assert list(data.columns) == ["elbo_train", "reconstruction_loss_train", "kl_local_train"]
    ax = gdx.pl.training_curve(back, "X_nbvae", logy=True)
    assert [ln.get_label() for ln in ax.lines] == list(data.columns)
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), np.arange(40))
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 1000 / (1 + np.arange(40)))
    assert len(ax.lines[2].get_xdata()) == 39  # NaN epoch dropped
    assert ax.get_xlabel() == "epoch" and ax.get_yscale() == "log"
    only = gdx.pl.training_curve(back, metrics=["elbo_train"], save=tmp_path / "t.pdf")
    assert len(only.lines) == 1 and (tmp_path / "t.pdf").exists()
    with pytest.raises(KeyError, match="available"):
        gdx.pl.training_curve(back, metrics=["elbo_validation"])
    with pytest.raises(KeyError, match=r"gdx\.tl\.nbvae"):
        gdx.pl.training_curve(back, "X_scvi")


def test_latent_genes(nbvae_adata):
    genes = list(nbvae_adata.var_names[:3])
    data = _latent_genes_data(nbvae_adata, "latent_path", ["S2", genes[0]])
    assert list(data.columns) == [genes[2], genes[0]]
    np.testing.assert_allclose(data.index, np.linspace(0, 1, 11))
    rel = _latent_genes_data(nbvae_adata, "latent_path", relative=True)
    np.testing.assert_allclose(rel[genes[2]], 2 * np.linspace(0, 1, 11))
    ax = gdx.pl.latent_genes(nbvae_adata)
    assert [ln.get_label() for ln in ax.lines] == ["S0", "S1", "S2"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), 10.0 * 2 ** np.linspace(0, 1, 11))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["basal", "luminal"]
    assert ax.get_ylabel() == "decoded normalised expression"
    with pytest.raises(KeyError, match="not decoded"):
        gdx.pl.latent_genes(nbvae_adata, genes=["S10"])
    with pytest.raises(KeyError, match=r"gdx\.tl\.latent_path"):
        gdx.pl.latent_genes(nbvae_adata, "path2")
