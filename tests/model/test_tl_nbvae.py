"""``tl.nbvae``: conditional mode, latent dimension from the data, random-state/registry hygiene, bad input."""

from __future__ import annotations

import random

import anndata
import numpy as np
import pandas as pd
import pytest

import gendex as gdx

torch = pytest.importorskip("torch")
scvi = pytest.importorskip("scvi")

from gendex.model import NBVAE, _latent_dim  # noqa: E402

TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n_samples=8, n_genes=200, seed=0, **kw):
    adata = gdx.datasets.simulate_counts(n_samples=n_samples, n_genes=n_genes, random_state=seed, **kw)
    gdx.pp.size_factors(adata)
    return adata


def _hidden(n_samples=16, n_genes=600, n_factors=2, strength=1.0, seed=0, lfc=None):
    """Counts with a two-group contrast and ``n_factors`` hidden continuous factors stronger than it."""
    rng = np.random.default_rng(seed)
    cond = np.array(["A", "B"] * (n_samples // 2))
    base = np.exp(rng.uniform(np.log(20), np.log(2000), n_genes))
    true = np.zeros(n_genes)
    de = rng.random(n_genes) < 0.1
    true[de] = rng.choice([-1, 1], de.sum()) * rng.uniform(1, 2, de.sum())
    if lfc is not None:
        true[:8] = lfc
        de[:8] = True
    h = rng.normal(size=(n_samples, n_factors))
    h = (h - h.mean(0)) / h.std(0)
    load = rng.normal(0, strength, size=(n_genes, n_factors))
    eta = np.log(base) + np.outer(cond == "B", true * np.log(2)) + h @ load.T
    sf = np.exp(rng.normal(0, 0.2, n_samples))
    mu = sf[:, None] * np.exp(eta)
    alpha = 0.05 + 1.0 / base
    counts = rng.poisson(rng.gamma(1 / alpha, mu * alpha))
    adata = anndata.AnnData(
        X=None,
        obs=pd.DataFrame({"condition": pd.Categorical(cond)}, index=[f"s{i}" for i in range(n_samples)]),
        var=pd.DataFrame({"true_log2fc": true, "is_de": de}, index=[f"g{j}" for j in range(n_genes)]),
    )
    adata.layers["counts"] = counts.astype(np.int64)
    adata.obsm["hidden"] = h
    gdx.pp.size_factors(adata)
    return adata


# ------------------------------------------------------------------------------------------------ conditional mode


def test_conditional_mode_recovers_large_fold_changes_with_codes_orthogonal_to_the_design():
    adata = _hidden(n_samples=12, n_genes=400, n_factors=1, strength=0.8, seed=1, lfc=9.0)
    model = gdx.tl.nbvae(adata, design="~condition", n_latent=1, max_epochs=150, **TRAIN)
    p = adata.uns["X_nbvae"]["params"]
    assert p["mode"] == "conditional" and p["design"] == "~condition"
    assert p["categorical_covariate_keys"] == ["condition"] and p["n_latent"] == 1
    # a log2 fold change of 9 keeps its size: the design coefficients' prior is weak
    est = model.module.cov_coef.detach().numpy()[:, 0] / np.log(2)
    np.testing.assert_allclose(np.median(est[:8]), 9.0, atol=0.5)
    # the codes carry the hidden factor, including its chance imbalance between the groups (estimated from the
    # genes that do not change), and not the design's effect
    z = adata.obsm["X_nbvae"][:, 0]
    h = adata.obsm["hidden"][:, 0]
    b = (adata.obs["condition"] == "B").to_numpy(dtype=float)
    assert abs(np.corrcoef(z, h)[0, 1]) > 0.9
    assert abs(np.corrcoef(z, b)[0, 1]) == pytest.approx(abs(np.corrcoef(h, b)[0, 1]), abs=0.15)
    assert p["latent_design_max_abs_corr"] == pytest.approx(abs(np.corrcoef(z, b)[0, 1]), abs=1e-6)
    assert np.asarray(p["confounding"]).shape == (1, 1)


def test_codes_stay_orthogonal_when_training_would_move_them_onto_the_design():
    # the encoder's MLP sees the counts: without the orthogonalisation, training is free to push the codes
    # towards the condition; with it, the trained codes (before the confounding adjustment adds back the
    # part estimated from the null genes) stay orthogonal to rounding after many epochs at a high rate
    adata = _data(n_samples=10, n_genes=150, seed=3)
    model = gdx.tl.nbvae(adata, design="~condition", n_latent=2, max_epochs=120, lr=5e-2, early_stopping=False, **TRAIN)
    b = (adata.obs["condition"] == "B").to_numpy(dtype=float)
    z = adata.obsm["X_nbvae"] - np.outer(b - b.mean(), model.confounding_[0])
    assert np.max(np.abs([np.corrcoef(z[:, j], b)[0, 1] for j in range(2)])) < 1e-3
    # and the adjustment leaves the fitted means as they were: the decoded means equal the counts' fit
    de = adata.var["is_de"].to_numpy()
    est = model.module.cov_coef.detach().numpy()[:, 0] / np.log(2)
    assert np.corrcoef(est[de], adata.var["true_log2fc"].to_numpy()[de])[0, 1] > 0.8


def test_confounding_adjustment_keeps_the_fit_and_removes_a_chance_imbalance():
    from gendex.model import _posterior

    adata = _hidden(n_samples=12, n_genes=500, n_factors=1, strength=0.8, seed=4)
    b = (adata.obs["condition"] == "B").to_numpy(dtype=float)
    h = adata.obsm["hidden"][:, 0]
    h = h + 1.0 * (b - b.mean())  # the unknown factor differs between the groups
    h = (h - h.mean()) / h.std()
    base = np.log(adata.layers["counts"].mean(0) + 1)
    rng = np.random.default_rng(0)
    load = rng.normal(0, 0.8, adata.n_vars)
    mu = np.exp(base[None, :] + np.outer(h, load))
    adata.layers["counts"] = rng.poisson(mu).astype(np.int64)
    adata.var["is_de"] = False
    gdx.pp.size_factors(adata)
    model = gdx.tl.nbvae(adata, design="~condition", n_latent=1, max_epochs=100, **TRAIN)
    est = model.module.cov_coef.detach().numpy()[:, 0]
    # no gene changes with the condition: after the adjustment the design coefficients are centred on 0
    # instead of following the loadings (as they do when the codes are held orthogonal to the design)
    assert abs(np.median(est)) < 0.05
    assert abs(np.corrcoef(est, load)[0, 1]) < 0.5
    state = _posterior.glm_state(model)
    assert np.isfinite(state.mu().numpy()).all()


def test_design_maps_onto_covariates_and_refuses_interactions(unchanged):
    adata = _data(n_samples=12, n_genes=80, seed=2)
    adata.obs["donor"] = [f"d{i // 2}" for i in range(12)]
    adata.obs["age"] = np.linspace(20, 60, 12)
    check = unchanged(adata)
    with pytest.raises(ValueError, match="interaction"):
        gdx.tl.nbvae(adata, design="~donor * condition", max_epochs=1, **TRAIN)
    with pytest.raises(ValueError, match="interaction"):
        gdx.tl.nbvae(adata, design="~donor + donor:condition", max_epochs=1, **TRAIN)
    with pytest.raises(ValueError, match="not a plain"):
        gdx.tl.nbvae(adata, design="~np.log(age) + condition", max_epochs=1, **TRAIN)
    with pytest.raises(ValueError, match="once"):
        gdx.tl.nbvae(adata, design="~condition", categorical_covariate_keys=["donor"], max_epochs=1, **TRAIN)
    with pytest.raises(KeyError, match="nope"):
        gdx.tl.nbvae(adata, design="~nope + condition", max_epochs=1, **TRAIN)
    check()
    model = gdx.tl.nbvae(adata, design="~age + condition", n_latent=1, max_epochs=3, **TRAIN)
    p = adata.uns["X_nbvae"]["params"]
    assert p["categorical_covariate_keys"] == ["condition"] and p["continuous_covariate_keys"] == ["age"]
    assert model.module.n_cov_features == 2


def test_unsupervised_mode_never_sees_labels():
    adata = _data(n_samples=8, n_genes=120, seed=1)
    model = gdx.tl.nbvae(adata, max_epochs=3, **TRAIN)
    p = adata.uns["X_nbvae"]["params"]
    assert p["mode"] == "unsupervised" and p["n_latent"] == 2 and model.module.n_cov_features == 0
    assert set(model.adata.obs.columns) <= {"size_factors", "_scvi_batch", "_scvi_labels"}


# ------------------------------------------------------------------------------------------------ latent dimension


def test_auto_latent_dimension_follows_the_hidden_factors():
    for n_factors in (1, 3):
        adata = _hidden(n_samples=20, n_genes=800, n_factors=n_factors, strength=0.6, seed=n_factors)
        counts = adata.layers["counts"].astype(float)
        b = (adata.obs["condition"] == "B").to_numpy(dtype=float)[:, None]
        k, info = _latent_dim.choose_n_latent(counts, adata.obs["size_factors"].to_numpy(), b)
        assert k == n_factors, info
    # no hidden structure: one dimension (the floor), and its eigenvalue is within the permutation null
    adata = _hidden(n_samples=20, n_genes=800, n_factors=1, strength=0.0, seed=5)
    b = (adata.obs["condition"] == "B").to_numpy(dtype=float)[:, None]
    k, info = _latent_dim.choose_n_latent(adata.layers["counts"].astype(float), adata.obs["size_factors"].to_numpy(), b)
    assert k == 1 and info["n_supported"] == 0


def test_auto_latent_dimension_is_recorded_and_capped():
    adata = _hidden(n_samples=8, n_genes=300, n_factors=6, strength=0.8, seed=2)
    model = gdx.tl.nbvae(adata, design="~condition", max_epochs=3, **TRAIN)  # default: auto in conditional mode
    ld = adata.uns["X_nbvae"]["params"]["latent_dim"]
    assert adata.uns["X_nbvae"]["params"]["n_latent_requested"] == "default"
    # 8 samples, intercept + condition: each gene GLM keeps 2 residual degrees of freedom -> at most 4 codes
    assert ld["cap"] == 4 and model.module.n_latent == ld["n_latent"] <= 4
    assert "parallel analysis" in ld["method"]
    assert len(ld["eigenvalues"]) == len(ld["null_quantile"])


# ------------------------------------------------------------------------------------------------ hygiene


def test_nbvae_leaves_global_random_states_alone_and_is_reproducible():
    adata = _data(n_samples=6, n_genes=60, seed=4)
    gdx.tl.nbvae(adata, max_epochs=2, **TRAIN)  # imports done
    np.random.seed(123)
    torch.manual_seed(123)
    random.seed(123)
    np_state, torch_state, py_state = np.random.get_state()[1].copy(), torch.random.get_rng_state(), random.getstate()
    gdx.tl.nbvae(adata, max_epochs=5, random_state=7, **TRAIN)
    first = adata.obsm["X_nbvae"].copy()
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert random.getstate() == py_state
    gdx.tl.nbvae(adata, max_epochs=5, random_state=7, **TRAIN)
    np.testing.assert_array_equal(adata.obsm["X_nbvae"], first)


def test_nbvae_is_quiet_by_default(capfd):
    adata = _data(n_samples=6, n_genes=40, seed=5)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error", FutureWarning)
        gdx.tl.nbvae(adata, max_epochs=2, accelerator="cpu")
    out, err = capfd.readouterr()
    for noise in ("GPU available", "Seed set", "Tip", "LeafSpec", "Epoch"):
        assert noise not in out + err


def test_fit_dispersions_false_works():
    adata = _data(n_samples=6, n_genes=40, seed=6)
    model = gdx.tl.nbvae(adata, max_epochs=2, train_kwargs={"fit_dispersions": False}, **TRAIN)
    assert model.dispersions_ is None
    assert adata.uns["X_nbvae"]["params"]["fit_dispersions"] is False
    assert "dispersion_trend" not in adata.uns["X_nbvae"]["params"]


def test_load_skips_initialisation_and_writes_nothing_into_adata(tmp_path, monkeypatch):
    from gendex.model import _init

    adata = _data(n_samples=8, n_genes=60, seed=7)
    adata.obs["batch"] = pd.Categorical(["x", "y"] * 4)
    model = gdx.tl.nbvae(adata, design="~batch + condition", n_latent=1, max_epochs=3, **TRAIN)
    model.save(tmp_path / "m")
    before_obs, before_uns = list(adata.obs.columns), set(adata.uns)

    def boom(*a, **k):
        raise AssertionError("the data-driven initialisation ran on load")

    monkeypatch.setattr(_init, "initial_parameters_from_manager", boom)
    loaded = NBVAE.load(tmp_path / "m", adata=adata, accelerator="cpu")
    assert list(adata.obs.columns) == before_obs and set(adata.uns) == before_uns
    assert not any(str(c).startswith("_scvi") for c in adata.obs.columns)
    np.testing.assert_allclose(loaded.get_decoded_means(), model.get_decoded_means(), rtol=1e-6)
    np.testing.assert_allclose(loaded.get_latent_representation(), adata.obsm["X_nbvae"], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_training_inputs_are_clear_errors(unchanged, capfd):
    adata = _data(n_samples=8, n_genes=40, seed=8)
    adata.obs["batch"] = pd.Categorical(["x", "y"] * 4)
    adata.obs["cond2"] = adata.obs["condition"].astype(str)  # the same factor under another name
    adata.obs["age"] = np.linspace(0, 1, 8)
    adata.obs.loc[adata.obs_names[0], "age"] = np.nan
    adata.obs["sf_str"] = adata.obs["size_factors"].astype(str)
    check = unchanged(adata)
    with pytest.raises(ValueError, match="missing"):
        gdx.tl.nbvae(adata, design="~age + condition", max_epochs=1, **TRAIN)
    with pytest.raises(ValueError, match="missing"):
        gdx.tl.nbvae(adata, continuous_covariate_keys=["age"], max_epochs=1, **TRAIN)
    with pytest.raises(ValueError, match="rank deficient|confounded"):
        gdx.tl.nbvae(adata, design="~cond2 + condition", max_epochs=1, **TRAIN)
    with pytest.raises(ValueError, match="confounded"):
        gdx.tl.nbvae(adata, categorical_covariate_keys=["cond2", "condition"], max_epochs=1, **TRAIN)
    with pytest.raises(ValueError, match="too many latent dimensions"):
        gdx.tl.nbvae(adata, design="~batch + condition", n_latent=4, max_epochs=1, **TRAIN)
    with pytest.raises(TypeError, match="not numbers"):
        gdx.tl.nbvae(adata, size_factor_key="sf_str", max_epochs=1, **TRAIN)
    for bad in ({"max_epochs": 0}, {"lr": -1.0}, {"batch_size": 2.5}, {"n_latent": "many"}):
        with pytest.raises(ValueError):
            gdx.tl.nbvae(adata, **{"max_epochs": 1, **bad}, **TRAIN)
    check()
    out, _ = capfd.readouterr()
    assert "DLASCL" not in out


def test_decode_latent_and_latent_path_refuse_bad_coordinates():
    adata = _data(n_samples=6, n_genes=40, seed=9)
    model = gdx.tl.nbvae(adata, max_epochs=2, **TRAIN)
    with pytest.raises(ValueError, match="2 latent dimensions"):
        model.decode_latent(np.zeros((3, 3)))
    assert model.decode_latent(np.zeros(2)).shape == (1, 40)
    with pytest.raises(ValueError, match="far outside"):
        gdx.tl.latent_path(adata, model, start=[0.0, 0.0], end=[1e6, 1e6], n_points=3)
    assert "latent_path" not in adata.uns
