from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

import gendex as gdx
from gendex.pl._embedding import _embedding_data
from gendex.pl._nbvae import _latent_genes_data, _training_curve_data


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


def test_latent_categorical(nbvae_adata, check_texts):
    data, _ = _embedding_data(nbvae_adata, "X_nbvae", color="celltype", components=(1, 3))
    np.testing.assert_array_equal(data[["x", "y"]].to_numpy(), nbvae_adata.obsm["X_nbvae"][:, [0, 2]])
    nbvae_adata.uns["celltype_colors"] = ["#111111", "#222222", "#333333"]
    ax = gdx.pl.latent(nbvae_adata, "nbvae", color="celltype", labels=True)
    assert [c.get_label() for c in ax.collections] == ["basal", "luminal", "stromal"]
    assert [len(c.get_offsets()) for c in ax.collections] == [3, 3, 3]
    np.testing.assert_allclose(ax.collections[1].get_facecolor()[0], to_rgba("#222222"))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["basal", "luminal", "stromal"]
    assert sorted(t.get_text() for t in ax.texts) == sorted(nbvae_adata.obs_names)
    assert ax.get_xlabel() == "nbvae latent dimension 1"
    assert ax.get_title() == "NB-VAE latent space"
    check_texts(ax)  # labels inside the axes: never over the legend beside it


def test_latent_old_call_forms(nbvae_adata):
    with pytest.warns(FutureWarning, match="1-based"):
        ax = gdx.pl.latent(nbvae_adata, components=(0, 2))
    np.testing.assert_allclose(ax.collections[0].get_offsets(), nbvae_adata.obsm["X_nbvae"][:, [0, 2]])
    with pytest.warns(FutureWarning, match="annotate"):
        ax = gdx.pl.latent(nbvae_adata, annotate=True)
    assert len(ax.texts) == nbvae_adata.n_obs
    ax = gdx.pl.latent(nbvae_adata)  # no data-set-specific default colour
    assert len(ax.collections) == 1 and ax.get_legend() is None


def test_latent_palette(nbvae_adata):
    ax = gdx.pl.latent(nbvae_adata, color="celltype", palette={"basal": "red", "luminal": "blue", "stromal": "k"})
    np.testing.assert_allclose(ax.collections[0].get_facecolor()[0], to_rgba("red"))
    with pytest.raises(ValueError, match="no colour for"):
        gdx.pl.latent(nbvae_adata, color="celltype", palette={"basal": "red"})


def test_latent_numeric_colorbar(nbvae_adata):
    _fig, ax = plt.subplots()
    out = gdx.pl.latent(nbvae_adata, color="depth", ax=ax)
    assert out is ax
    np.testing.assert_allclose(ax.collections[0].get_offsets(), nbvae_adata.obsm["X_nbvae"][:, :2])
    assert len(ax.figure.axes) == 2 and ax.figure.axes[1].get_ylabel() == "depth"


def test_latent_bad_input(nbvae_adata):
    with pytest.raises(KeyError, match=r"available: \['X_nbvae'\]"):
        gdx.pl.latent(nbvae_adata, basis="X_pca")
    with pytest.raises(KeyError, match="available columns"):
        gdx.pl.latent(nbvae_adata, color="tissue")
    with pytest.raises(ValueError, match="components"):
        gdx.pl.latent(nbvae_adata, components=(1, 4))


def test_training_curve(nbvae_adata, tmp_path):
    path = tmp_path / "m.h5ad"
    nbvae_adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    data = _training_curve_data(back, "X_nbvae", scale="absolute")
    assert list(data.columns) == ["elbo_train", "reconstruction_loss_train", "kl_local_train"]
    with pytest.warns(FutureWarning, match="logy"):
        ax = gdx.pl.training_curve(back, "X_nbvae", logy=True)
    assert [ln.get_label().split(" (final")[0] for ln in ax.lines] == ["ELBO", "reconstruction", "KL (latent)"]
    assert ax.lines[0].get_label() == f"ELBO (final {1000 / 40:.2f})"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), np.arange(40))
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 1000 / (1 + np.arange(40)))
    assert len(ax.lines[2].get_xdata()) == 39  # NaN epoch dropped
    assert ax.get_xlabel() == "epoch" and ax.get_yscale() == "log"
    assert ax.get_title() == "NB-VAE training (3 latent dimensions)"  # the model, not the key
    only = gdx.pl.training_curve(back, metrics=["elbo_train"], save=tmp_path / "t.pdf")
    assert len(only.lines) == 2 and (tmp_path / "t.pdf").exists()  # the curve and the zero line
    with pytest.raises(KeyError, match="available"):
        gdx.pl.training_curve(back, metrics=["elbo_validation"])
    with pytest.raises(KeyError, match=r"gdx\.tl\.nbvae"):
        gdx.pl.training_curve(back, "X_scvi")
    with pytest.raises(ValueError, match="scale"):
        gdx.pl.training_curve(back, scale="sqrt")


def test_training_curve_relative_shows_convergence(nbvae_adata):
    """Per sample (global KL / n, n read back from ELBO = rec + KL local + KL global / n), relative to the end."""
    n, epochs = 12, np.arange(50)
    rec = 80_000 + 2_000 * np.exp(-epochs / 10)
    kl_local = np.full(50, 6.0)
    kl_global = 17_000 - 3_000 * np.exp(-epochs / 20)
    history = pd.DataFrame(
        {
            "elbo_train": rec + kl_local + kl_global / n,
            "reconstruction_loss_train": rec,
            "kl_local_train": kl_local,
            "kl_global_train": kl_global,
        },
        index=pd.RangeIndex(50, name="epoch"),
    )
    nbvae_adata.uns["X_nbvae"]["history"] = history
    data = _training_curve_data(nbvae_adata, "X_nbvae")
    assert data.attrs["n_train"] == n  # not adata.n_obs (9): read back from the logged terms
    final_elbo = history["elbo_train"].iloc[-1]
    np.testing.assert_allclose(data.attrs["final"]["kl_global_train"], kl_global[-1] / n)
    np.testing.assert_allclose(data["elbo_train"], (history["elbo_train"] - final_elbo) / final_elbo * 100)
    terms = data[["reconstruction_loss_train", "kl_local_train", "kl_global_train"]].sum(axis=1)
    np.testing.assert_allclose(terms, data["elbo_train"], atol=1e-9)  # the terms still add up to the ELBO
    ax = gdx.pl.training_curve(nbvae_adata)
    y = ax.lines[0].get_ydata()
    assert y[0] > 2.0 and abs(y[-1]) < 1e-12  # a visible fall to 0 (on a linear 0..80,000 axis: invisible)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[3] == f"KL (global prior) / n (final {kl_global[-1] / n:,.0f})"
    assert "% of the final ELBO" in ax.get_ylabel()


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
    assert ax.get_title() == "NB-VAE decoded expression: basal to luminal"
    with pytest.raises(KeyError, match="not decoded"):
        gdx.pl.latent_genes(nbvae_adata, genes=["S10"])
    with pytest.raises(KeyError, match=r"gdx\.tl\.latent_path"):
        gdx.pl.latent_genes(nbvae_adata, "path2")
