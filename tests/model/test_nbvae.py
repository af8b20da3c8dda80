from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import gendex as gdx

torch = pytest.importorskip("torch")
scvi = pytest.importorskip("scvi")

from gendex.model import NBVAE, NBVAEModule, _dispersion, _init, _posterior  # noqa: E402

TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
# Lightning 2.6 warns about torch's pytree API on every first fit; not ours to fix (pyproject filter pending)
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\).*:FutureWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def _data(n_samples=8, n_genes=200, seed=0, **kw):
    adata = gdx.datasets.simulate_counts(n_samples=n_samples, n_genes=n_genes, random_state=seed, **kw)
    gdx.pp.size_factors(adata)
    return adata


@pytest.fixture(scope="module")
def trained():
    adata = _data()
    scvi.settings.seed = 0
    NBVAE.setup_anndata(adata)
    model = NBVAE(adata)
    model.train(max_epochs=30, early_stopping=False, **TRAIN)
    return adata, model


# ------------------------------------------------------------------------------------------------ setup


def test_import_gendex_does_not_import_torch():
    code = "import gendex, sys; gdx = gendex; gdx.tl.nbvae; assert 'torch' not in sys.modules; print('ok')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout


def test_setup_anndata_errors(unchanged):
    adata = _data()
    check = unchanged(adata)
    with pytest.raises(KeyError, match="layers\\['raw'\\]"):
        NBVAE.setup_anndata(adata, layer="raw")
    with pytest.raises(KeyError, match="sf"):
        NBVAE.setup_anndata(adata, size_factor_key="sf")
    with pytest.raises(KeyError, match="batch"):
        NBVAE.setup_anndata(adata, categorical_covariate_keys=["batch"])
    check()
    bad = adata.copy()
    bad.obs["size_factors"] = 0.0
    with pytest.raises(ValueError, match="positive size factors"):
        NBVAE.setup_anndata(bad)
    bad = adata.copy()
    bad.layers["counts"] = bad.layers["counts"] + 0.5
    with pytest.raises(ValueError, match="non-integer"):
        NBVAE.setup_anndata(bad)


def test_initialisation_starts_at_pca_and_glm():
    adata = _data(n_samples=12, n_genes=300, seed=3)
    NBVAE.setup_anndata(adata)
    model = NBVAE(adata, n_latent=2)
    m = model.module
    assert m.n_latent == 2 and m.n_cov_features == 0
    # the encoder starts at PCA: the first latent dimension separates the two simulated groups
    norm = adata.layers["counts"] / adata.obs["size_factors"].to_numpy()[:, None]
    with torch.no_grad():
        z = m.z_encoder(torch.as_tensor(np.log1p(norm), dtype=torch.float32)).loc.numpy()
    cond = adata.obs["condition"].to_numpy()
    gap = abs(z[cond == "B", 0].mean() - z[cond == "A", 0].mean())
    assert gap > 4 * z[cond == "A", 0].std()
    assert z[:, 0].std(ddof=1) == pytest.approx(1.0, rel=0.05)  # common scale: first PC has unit variance
    # intercepts near the log mean normalised counts; the dispersion prior is DESeq2-like
    np.testing.assert_allclose(m.intercept.detach().numpy(), np.log(norm.mean(0)), atol=1.0)
    assert 0.0 < float(m.disp_prior_var) < 4.0
    assert torch.allclose(m.log_disp.detach(), m.log_disp.detach().clamp(math.log(1e-8), math.log(12)))


# ------------------------------------------------------------------------------------------------ module


def test_module_contract(trained):
    adata, model = trained
    m = model.module
    x = torch.as_tensor(adata.layers["counts"][:4], dtype=torch.float32)
    sf = torch.as_tensor(adata.obs["size_factors"].to_numpy()[:4, None], dtype=torch.float32)
    tensors = {"X": x, "size_factor": sf, "batch": torch.zeros(4, 1)}
    inf, gen, loss = m(tensors, loss_kwargs={"kl_weight": 1.0, "n_obs": 8})
    assert inf["z"].shape == (4, 2) and inf["qz"].loc.shape == (4, 2)
    assert gen["px"].mu.shape == (4, adata.n_vars)
    torch.testing.assert_close(gen["px"].mu, sf * gen["px"].scale)  # size factors are a fixed offset
    assert loss.reconstruction_loss["reconstruction_loss"].shape == (4,)
    assert loss.kl_global["kl_global"].ndim == 0
    expected = (loss.reconstruction_loss_sum + loss.kl_local_sum) / 4 + loss.kl_global_sum / 8
    torch.testing.assert_close(loss.loss, expected)
    assert m.sample(tensors).shape == (4, adata.n_vars)
    assert m.sample(tensors, n_samples=3).shape == (4, adata.n_vars, 3)
    with pytest.raises(ValueError, match="no batch"):
        m.generative(inf["z"], sf, transform_batch=1)
    assert not any(p.requires_grad for n, p in m.named_buffers())
    assert "size_factor" not in dict(m.named_parameters())


def test_global_prior_is_the_eb_dispersion_prior_plus_weight_prior():
    adata = _data(n_samples=6, n_genes=50)
    NBVAE.setup_anndata(adata)
    m = NBVAE(adata).module
    with torch.no_grad():
        m.log_disp += 1.0
    delta = m.log_disp - m.log_disp_prior_mean
    prior = 0.5 * (delta**2).sum() / m.disp_prior_var
    weights = 0.5 * ((m.loadings**2).sum() + (m.cov_coef**2).sum()) / m.weight_prior_sd**2
    assert m.global_prior().item() == pytest.approx((prior + weights).item(), rel=1e-6)
    assert m.log_disp.requires_grad and not m.log_disp_prior_mean.requires_grad


# ------------------------------------------------------------------------------------------------ training


def test_train_history_dispersions_and_device(trained):
    adata, model = trained
    assert model.is_trained
    elbo = model.history["elbo_train"]["elbo_train"].astype(float)
    assert len(elbo) == 30 and elbo.iloc[-1] < elbo.iloc[0]
    assert model.trainer.accelerator.__class__.__name__ == "CPUAccelerator"
    d = model.dispersions_
    columns = ["baseMean", "genewise", "trend", "MAP", "dispersion", "outlier", "log_dispersion_var"]
    assert list(d.columns) == columns + list(_dispersion.NODE_COLUMNS)
    assert list(d.index) == list(adata.var_names)
    np.testing.assert_allclose(np.log(d["dispersion"]), model.module.log_disp.detach().numpy(), rtol=1e-5)
    np.testing.assert_array_equal(d["dispersion"], d["MAP"])  # the heavy-tailed prior: every gene's MAP
    assert (d["log_dispersion_var"] > 0).all()
    assert model.dispersion_trend_["prior_var"] > 0.0


def test_train_passes_strategy_and_devices_to_lightning():
    from lightning.pytorch.strategies import SingleDeviceStrategy

    adata = _data(n_samples=6, n_genes=40)
    NBVAE.setup_anndata(adata)
    model = NBVAE(adata)
    strategy = SingleDeviceStrategy(device="cpu")
    model.train(max_epochs=2, devices=1, strategy=strategy, fit_dispersions=False, **TRAIN)
    assert model.trainer.strategy is strategy
    assert model.trainer.num_devices == 1


def test_early_stopping_on_training_elbo():
    adata = _data(n_samples=8, n_genes=100, seed=2)
    scvi.settings.seed = 0
    NBVAE.setup_anndata(adata)
    model = NBVAE(adata)
    model.train(max_epochs=400, early_stopping_patience=5, fit_dispersions=False, **TRAIN)
    n = len(model.history["elbo_train"])
    assert 5 < n < 400


def test_seed_reproducibility():
    adata = _data(n_samples=6, n_genes=60, seed=4)
    out = []
    for _ in range(2):
        scvi.settings.seed = 7
        NBVAE.setup_anndata(adata)
        model = NBVAE(adata)
        model.train(max_epochs=10, **TRAIN)
        out.append(model.get_latent_representation())
    np.testing.assert_array_equal(out[0], out[1])


def test_save_load_round_trip(trained, tmp_path):
    adata, model = trained
    model.save(tmp_path / "m", save_anndata=True)
    loaded = NBVAE.load(tmp_path / "m", accelerator="cpu")
    assert loaded.is_trained
    a = model.get_decoded_means()
    np.testing.assert_array_equal(a, loaded.get_decoded_means())
    scvi.settings.seed = 3  # get_normalized_expression decodes a draw of z: the same seed gives the same draw
    b = model.get_normalized_expression(return_numpy=True)
    scvi.settings.seed = 3
    np.testing.assert_array_equal(b, loaded.get_normalized_expression(return_numpy=True))
    np.testing.assert_array_equal(model.get_latent_representation(), loaded.get_latent_representation())
    pd.testing.assert_frame_equal(model.dispersions_, loaded.dispersions_)
    np.testing.assert_array_equal(model.decode_latent(np.zeros((1, 2))), loaded.decode_latent(np.zeros((1, 2))))
    # loading onto the caller's AnnData (same genes, same obs columns) works too
    again = NBVAE.load(tmp_path / "m", adata=adata.copy(), accelerator="cpu")
    np.testing.assert_array_equal(a, again.get_decoded_means())


def test_normalized_expression_excludes_size_factors(trained):
    adata, model = trained
    state = _posterior.glm_state(model)
    decoded = model.get_decoded_means()
    np.testing.assert_allclose(decoded, (state.mu() / state.size_factors[:, None]).numpy(), rtol=1e-4)
    np.testing.assert_allclose(decoded.mean(0), _posterior.mean_decoded(state), rtol=1e-4)
    scvi.settings.seed = 1
    scale = model.get_normalized_expression(return_numpy=True)
    scvi.settings.seed = 1
    mu = model.get_normalized_expression(library_size="latent", return_numpy=True)
    np.testing.assert_allclose(mu, scale * adata.obs["size_factors"].to_numpy()[:, None], rtol=1e-5)
    # the posterior of each code is tight: a draw decodes close to the decoded mean
    np.testing.assert_allclose(np.log(scale), np.log(model.get_decoded_means()), atol=0.5)


def test_covariates_and_counterfactual_features():
    adata = _data(n_samples=8, n_genes=80, seed=5)
    adata.obs["batch"] = pd.Categorical(["x", "y"] * 4)
    adata.obs["age"] = np.linspace(-1, 1, 8)
    NBVAE.setup_anndata(adata, categorical_covariate_keys=["condition", "batch"], continuous_covariate_keys=["age"])
    model = NBVAE(adata)
    assert model.module.n_cov_features == 3  # condition B, batch y, age
    feats = _posterior.covariate_features(model).cpu().numpy()
    np.testing.assert_array_equal(feats[:, 0], (adata.obs["condition"] == "B").to_numpy())
    np.testing.assert_array_equal(feats[:, 1], (adata.obs["batch"] == "y").to_numpy())
    np.testing.assert_allclose(feats[:, 2], adata.obs["age"].to_numpy(), rtol=1e-6)
    f1, f2 = _posterior.counterfactual_features(model, "condition", "B", "A")
    assert (f1[:, 0] == 1).all() and (f2[:, 0] == 0).all()
    torch.testing.assert_close(f1[:, 1:], f2[:, 1:])
    assert _posterior.counterfactual_features(model, "age", "1", "2") is None
    with pytest.raises(ValueError, match="unknown to the model"):
        _posterior.counterfactual_features(model, "condition", "C", "A")
    # the GLM start recovers the condition effect as a covariate coefficient (natural log)
    true = adata.var["true_log2fc"].to_numpy() * np.log(2)
    est = model.module.cov_coef.detach().numpy()[:, 0]
    de = adata.var["is_de"].to_numpy()
    assert np.corrcoef(true[de], est[de])[0, 1] > 0.8


# ------------------------------------------------------------------------------------------------ kernels


def _nb(rng, mu, alpha):
    shape = 1.0 / alpha
    return rng.poisson(rng.gamma(shape, mu / shape))


def test_genewise_dispersion_and_trend_recover_truth():
    rng = np.random.default_rng(0)
    n, g = 60, 400
    base = np.exp(rng.uniform(np.log(20), np.log(2000), g))
    alpha = 0.05 + 2.0 / base
    y = _nb(rng, np.broadcast_to(base, (n, g)), alpha)
    yt = torch.as_tensor(y, dtype=torch.float64)
    mu = torch.as_tensor(np.broadcast_to(y.mean(0), (n, g)).copy(), dtype=torch.float64)
    moments = torch.ones(n, 1, 1, dtype=torch.float64)
    log_a = _dispersion.fit_log_dispersion(yt, mu, moments).numpy()
    assert np.median(np.abs(log_a - np.log(alpha))) < 0.2
    kind, coefs, trend = _dispersion.fit_trend(base, np.exp(log_a))
    assert kind == "parametric"
    np.testing.assert_allclose(coefs, [0.05, 2.0], rtol=0.3)
    np.testing.assert_allclose(trend, coefs[0] + coefs[1] / base)
    fit = _dispersion.fit_dispersions(yt, mu, moments, base)
    assert fit.prior_var < 0.05  # no real scatter around the trend: the bound from the estimate's own noise
    assert fit.tail_weights[_dispersion.TAIL_SHIFTS == 0.0] > 0.9  # no tail above the trend either
    assert np.median(np.abs(fit.log_final - np.log(alpha))) < np.median(np.abs(log_a - np.log(alpha)))


def test_dispersion_trend_and_prior_are_the_deseq2_engines():
    from gendex.stats._deseq2 import _trend

    rng = np.random.default_rng(3)
    base = np.exp(rng.uniform(np.log(5), np.log(5000), 3000))
    disp = (0.05 + 1.0 / base) * np.exp(rng.normal(0, 0.8, base.size))
    kind, coefs, _ = _dispersion.fit_trend(base, disp)
    np.testing.assert_array_equal(coefs, _trend.parametric_trend(base, disp))
    assert kind == "parametric"
    kind, coefs, trend = _dispersion.fit_trend(np.array([1.0, 2.0]), np.array([0.1, 0.2]))
    assert kind == "mean" and trend == pytest.approx([0.15, 0.15])
    assert _dispersion.prior_variance is _trend.prior_variance  # one copy of DESeq2's prior, in gendex.stats


def test_heavy_tail_prior_keeps_genes_far_above_the_trend():
    # 20% of genes 8x above the trend: the estimated tail carries about that mass, and their MAP
    # dispersions stay near the gene-wise estimates instead of being shrunk towards the trend
    rng = np.random.default_rng(4)
    n, g = 8, 3000
    base = np.exp(rng.uniform(np.log(50), np.log(5000), g))
    high = rng.random(g) < 0.2
    alpha = (0.05 + 1.0 / base) * np.exp(rng.normal(0, 0.3, g)) * np.where(high, 8.0, 1.0)
    y = _nb(rng, np.broadcast_to(base, (n, g)), alpha)
    yt = torch.as_tensor(y, dtype=torch.float64)
    mu = torch.as_tensor(np.broadcast_to(y.mean(0), (n, g)).copy(), dtype=torch.float64)
    moments = torch.ones(n, 1, 1, dtype=torch.float64)
    heavy = _dispersion.fit_dispersions(yt, mu, moments, base)
    normal = _dispersion.fit_dispersions(yt, mu, moments, base, heavy_tail=False)
    shifts = _dispersion.TAIL_SHIFTS * math.sqrt(heavy.prior_var)
    mass_above = heavy.tail_weights[shifts - shifts[np.argmax(heavy.tail_weights)] > 1.0].sum()
    assert 0.1 < mass_above < 0.35
    assert normal.tail_weights[_dispersion.TAIL_SHIFTS == 0.0] == 1.0
    err_heavy = np.median(np.abs(heavy.log_final - np.log(alpha))[high])
    err_normal = np.median(np.abs(normal.log_final - np.log(alpha))[high])
    assert err_heavy < err_normal
    # genes on the trend are still shrunk as DESeq2 shrinks them
    low = ~high
    assert np.median(np.abs(heavy.log_final - np.log(alpha))[low]) < np.median(
        np.abs(heavy.log_genewise - np.log(alpha))[low]
    )
    # their uncertainty is larger than the normal prior's, so it feeds wider fold-change draws
    assert np.median(heavy.log_final_var[high]) > np.median(normal.log_final_var[high])


def test_nb_glm_fit_recovers_coefficients():
    rng = np.random.default_rng(2)
    n, g = 200, 50
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    beta = np.column_stack([rng.uniform(2, 6, g), rng.normal(0, 0.7, g)])
    sf = np.exp(rng.normal(0, 0.2, n))
    y = _nb(rng, sf[:, None] * np.exp(x @ beta.T), 0.1)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    start = torch.zeros(g, 2, dtype=torch.float64)
    start[:, 0] = t(np.log(y.mean(0)))
    est = _init.fit_nb_glm(
        t(y), t(sf), t(x), t(np.full(g, np.log(0.1))), start, torch.eye(2, dtype=torch.float64) * 1e-8
    )
    np.testing.assert_allclose(est.numpy(), beta, atol=0.15)


def test_module_class_is_exported():
    assert gdx.model.NBVAE is NBVAE
    assert gdx.model.NBVAEModule is NBVAEModule
