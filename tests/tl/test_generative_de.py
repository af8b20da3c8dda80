from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import gendex as gdx
from gendex.stats._generative import de_table

pytest.importorskip("scvi")

TRAIN = {"accelerator": "cpu", "enable_progress_bar": False}
# Lightning 2.6 warns about torch's pytree API on every first fit; not ours to fix (pyproject filter pending)
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\).*:FutureWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]

DE_COLUMNS = [
    "baseMean", "log2FoldChange", "lfcSE", "lfc_lower", "lfc_upper", "prob_de", "prob_up", "prob_down", "lfsr",
    "qvalue", "is_de", "stat", "pvalue", "padj", "lfc_shrunk", "lfc_shrunk_se", "lfc_residual",
    "lfc_residual_se",
]  # fmt: skip


def _data(n_samples=8, n_genes=200, seed=0):
    adata = gdx.datasets.simulate_counts(n_samples=n_samples, n_genes=n_genes, random_state=seed)
    gdx.pp.size_factors(adata)
    return adata


@pytest.fixture(scope="module")
def fitted():
    adata = _data()
    model = gdx.tl.nbvae(adata, max_epochs=40, early_stopping=False, **TRAIN)
    return adata, model


# ------------------------------------------------------------------------------------------------ tl.nbvae


def test_nbvae_writes_latent_and_history(fitted, tmp_path):
    adata, model = fitted
    z = adata.obsm["X_nbvae"]
    assert z.shape == (8, 2) and z.dtype == np.float64
    np.testing.assert_allclose(z, model.get_latent_representation(), rtol=1e-6)
    rec = adata.uns["X_nbvae"]
    hist = rec["history"]
    assert isinstance(hist, pd.DataFrame) and len(hist) == 40
    assert list(hist.index) == list(range(40))
    assert {"elbo_train", "reconstruction_loss_train", "kl_local_train", "kl_global_train"} <= set(hist.columns)
    assert all(hist[c].dtype == np.float64 for c in hist.columns)
    p = rec["params"]
    assert p["n_latent"] == 2 and p["n_epochs"] == 40 and p["size_factor_key"] == "size_factors"
    assert 0.0 < p["dispersion_trend"]["prior_var"] < 4.0
    # scvi-tools' registry never enters the caller's AnnData
    assert not any(str(c).startswith("_scvi") for c in adata.obs.columns)
    assert not any(str(k).startswith("_scvi") for k in adata.uns)
    path = tmp_path / "a.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["X_nbvae"], z)
    pd.testing.assert_frame_equal(
        back.uns["X_nbvae"]["history"].reset_index(drop=True), hist.reset_index(drop=True), check_index_type=False
    )
    assert back.uns["X_nbvae"]["params"]["n_latent"] == 2


def test_nbvae_bad_input_leaves_adata_unchanged(unchanged):
    adata = _data(n_samples=6, n_genes=30)
    check = unchanged(adata)
    with pytest.raises(KeyError, match="sf"):
        gdx.tl.nbvae(adata, size_factor_key="sf", max_epochs=1, **TRAIN)
    with pytest.raises(KeyError, match="layers"):
        gdx.tl.nbvae(adata, layer="raw", max_epochs=1, **TRAIN)
    with pytest.raises(KeyError, match="nope"):
        gdx.tl.nbvae(adata, categorical_covariate_keys=["nope"], max_epochs=1, **TRAIN)
    with pytest.raises(ValueError, match="n_latent"):
        gdx.tl.nbvae(adata, n_latent=0, max_epochs=1, **TRAIN)
    check()


# ------------------------------------------------------------------------------------------------ generative_de


def test_generative_de_contract(fitted, tmp_path):
    adata, model = fitted
    gdx.tl.generative_de(adata, model, groupby="condition", group1="B", group2="A")
    t = adata.varm["nbvae_de"]
    assert list(t.index) == list(adata.var_names)
    assert list(t.columns[: len(DE_COLUMNS)]) == DE_COLUMNS
    assert t["is_de"].dtype == bool
    np.testing.assert_allclose(t["pvalue"], 1 - np.maximum(t["prob_up"], t["prob_down"]))
    np.testing.assert_allclose(t["prob_de"], t["prob_up"] + t["prob_down"], atol=1e-12)
    np.testing.assert_allclose(t["padj"], t["qvalue"])
    np.testing.assert_allclose(t["stat"], t["log2FoldChange"] / t["lfcSE"])
    # the interval holds the quantiles of the draws, their mean lies inside
    assert (t["lfc_lower"] <= t["lfc_upper"]).all()
    assert (t["log2FoldChange"][t["lfc_lower"] > 0] > 0).all()
    assert (t["log2FoldChange"][t["lfc_upper"] < 0] < 0).all()
    assert t["prob_de"].between(0, 1).all() and t["lfsr"].between(0, 1).all()
    assert (t["is_de"] == (t["qvalue"] <= 0.05)).all()
    rec = adata.uns["nbvae_de"]
    assert rec["method"] == "nbvae" and rec["contrast"] == ["condition", "B", "A"]
    for k in ("groupby", "group1", "group2", "delta", "fdr_target", "ci_level"):
        assert k in rec["params"]
    path = tmp_path / "a.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(back.varm["nbvae_de"], t)
    assert list(back.uns["nbvae_de"]["contrast"]) == ["condition", "B", "A"]
    assert gdx.get.de_results(back, "nbvae_de").shape[0] == adata.n_vars


def test_generative_de_recovers_simulated_effects(fitted):
    adata, model = fitted
    gdx.tl.generative_de(adata, model, groupby="condition", group1="B", group2="A", key_added="de")
    t = adata.varm["de"]
    true = adata.var["true_log2fc"]
    de = adata.var["is_de"]
    assert np.corrcoef(t["log2FoldChange"][de], true[de])[0, 1] > 0.9
    assert t["is_de"][~de].mean() < 0.05
    # baseMean: decoded normalised means, close to the mean normalised counts
    norm = adata.layers["counts"] / adata.obs["size_factors"].to_numpy()[:, None]
    ratio = t["baseMean"] / norm.mean(0)
    assert ratio[norm.mean(0) > 50].between(0.8, 1.25).all()


def test_generative_de_sign_convention(fitted):
    adata, model = fitted
    gdx.tl.generative_de(adata, model, groupby="condition", group1="B", group2="A", key_added="ba")
    gdx.tl.generative_de(adata, model, groupby="condition", group1="A", group2="B", key_added="ab")
    ba, ab = adata.varm["ba"], adata.varm["ab"]
    np.testing.assert_allclose(ba["log2FoldChange"], -ab["log2FoldChange"], atol=1e-5)
    np.testing.assert_allclose(ba["lfc_shrunk"], -ab["lfc_shrunk"], atol=1e-4)
    np.testing.assert_allclose(ba["prob_de"], ab["prob_de"], atol=1e-4)


def test_uncertainty_sources_widen_intervals(fitted):
    adata, model = fitted
    widths = {}
    for name, inc in {"z": ("z",), "dec": ("z", "decoder"), "all": ("z", "decoder", "dispersion")}.items():
        gdx.tl.generative_de(
            adata, model, groupby="condition", group1="B", group2="A", key_added=name, uncertainty=inc,
            lfc_prior="flat",
        )  # fmt: skip
        widths[name] = (adata.varm[name]["lfc_upper"] - adata.varm[name]["lfc_lower"]).median()
    assert widths["z"] < 0.5 * widths["dec"]
    assert widths["dec"] <= widths["all"] * 1.05


def test_generative_de_bad_input(fitted, unchanged):
    adata, model = fitted
    check = unchanged(adata)
    kw = {"groupby": "condition", "group1": "B", "group2": "A"}
    with pytest.raises(KeyError, match="nope"):
        gdx.tl.generative_de(adata, model, groupby="nope", group1="B", group2="A")
    with pytest.raises(ValueError, match="not found"):
        gdx.tl.generative_de(adata, model, groupby="condition", group1="C", group2="A")
    with pytest.raises(ValueError, match="must differ"):
        gdx.tl.generative_de(adata, model, groupby="condition", group1="A", group2="A")
    with pytest.raises(ValueError, match="delta"):
        gdx.tl.generative_de(adata, model, **kw, delta=-1)
    with pytest.raises(ValueError, match="ci_level"):
        gdx.tl.generative_de(adata, model, **kw, ci_level=1.5)
    with pytest.raises(ValueError, match="fdr_target"):
        gdx.tl.generative_de(adata, model, **kw, fdr_target=0)
    with pytest.raises(ValueError, match="uncertainty"):
        gdx.tl.generative_de(adata, model, **kw, uncertainty=("z", "magic"))
    with pytest.raises(ValueError, match="lfc_prior"):
        gdx.tl.generative_de(adata, model, **kw, lfc_prior="strong")
    with pytest.raises(ValueError, match="var_names"):
        gdx.tl.generative_de(adata[:, :100].copy(), model, **kw)
    check()


def test_model_methods_are_the_computation(fitted):
    adata, model = fitted
    gdx.tl.generative_de(adata, model, contrast=["condition", "B", "A"], key_added="shell")
    table = model.get_generative_de(adata, contrast=["condition", "B", "A"])
    record = table.attrs["generative_de"]
    assert record["mode"] == "unsupervised" and record["contrast"] == ["condition", "B", "A"]
    table.attrs = {}
    pd.testing.assert_frame_equal(table, adata.varm["shell"])
    draws = model.get_lfc_draws(adata, groupby="condition", group1="B", group2="A", n_draws=100, random_state=3)
    assert draws.shape == (100, adata.n_vars) and draws.dtype == np.float32
    # another seed and fewer draws: the same posterior up to Monte-Carlo error (sd / sqrt(100) per gene)
    gap = np.abs(draws.mean(0) - table["log2FoldChange"]) / table["lfcSE"]
    assert np.quantile(gap, 0.99) < 5 / np.sqrt(100) * 2
    # the same seed gives the same draws; random_state=None draws fresh ones
    again = model.get_lfc_draws(adata, groupby="condition", group1="B", group2="A", n_draws=100, random_state=3)
    np.testing.assert_array_equal(draws, again)
    fresh = model.get_lfc_draws(adata, groupby="condition", group1="B", group2="A", n_draws=100, random_state=None)
    assert not np.array_equal(draws, fresh)


def test_scvi_differential_expression_is_routed(fitted):
    adata, model = fitted
    table = model.get_generative_de(adata, contrast=["condition", "B", "A"], delta=0.5, fdr_target=0.1)
    routed = model.differential_expression(adata, groupby="condition", group1=["B"], group2="A", delta=0.5,
                                           fdr_target=0.1)  # fmt: skip
    pd.testing.assert_frame_equal(routed, table)
    for kwargs in (
        {"groupby": "condition"},  # scvi's one-vs-rest
        {"groupby": "condition", "group1": ["A", "B"]},
        {"idx1": [0, 1], "idx2": [2, 3]},
        {"groupby": "condition", "group1": "B", "group2": "A", "mode": "vanilla"},
        {"groupby": "condition", "group1": "B", "group2": "A", "batch_correction": True},
    ):
        with pytest.raises(NotImplementedError, match="get_generative_de"):
            model.differential_expression(adata, **kwargs)


def test_contrast_vocabulary_and_copy(fitted, unchanged):
    adata, model = fitted
    check = unchanged(adata)
    out = gdx.tl.generative_de(adata, model, contrast=["condition", "B", "A"], key_added="c", copy=True)
    check()
    assert out is not adata and "c" in out.varm
    gdx.tl.generative_de(adata, model, groupby="condition", group1="B", group2="A", key_added="alias")
    pd.testing.assert_frame_equal(out.varm["c"], adata.varm["alias"])
    assert out.uns["c"]["contrast"] == ["condition", "B", "A"]
    check = unchanged(adata)
    with pytest.raises(ValueError, match="once"):
        gdx.tl.generative_de(adata, model, contrast=["condition", "B", "A"], groupby="condition")
    with pytest.raises(ValueError, match="name the comparison"):
        gdx.tl.generative_de(adata, model)
    with pytest.raises(ValueError, match="key_added"):
        gdx.tl.generative_de(adata, model, contrast=["condition", "B", "A"], key_added="")
    check()


def test_calls_are_directional(fitted):
    adata, model = fitted
    gdx.tl.generative_de(adata, model, contrast=["condition", "B", "A"], key_added="dir")
    t = adata.varm["dir"]
    called = t["is_de"].to_numpy()
    assert called.sum() > 5
    # a gene's local directional error counts a wrong sign and a change below delta: never below its lfsr
    assert (t["pvalue"] >= t["lfsr"] - 1e-12).all()
    # the calls are the genes of smallest local error, as many as keep their mean at most the target
    assert t["pvalue"][called].max() <= t["pvalue"][~called].min()
    assert (called == (t["qvalue"] <= 0.05).to_numpy()).all()
    up = called & (t["log2FoldChange"] > 0).to_numpy()
    assert (t["prob_up"][up] > t["prob_down"][up]).all()
    assert ((t["prob_up"][called] >= 0.5) | (t["prob_down"][called] >= 0.5)).all()
    # the mean local directional error of the calls is the posterior FDR that is controlled
    assert t["pvalue"][called].mean() <= 0.05 + 1e-12


def test_one_sample_group_and_confounded_covariates(unchanged):
    adata = _data(n_samples=8, n_genes=80, seed=2)
    adata.obs["batch"] = adata.obs["condition"].map({"A": "b1", "B": "b2"}).astype("category")
    model = gdx.tl.nbvae(adata, categorical_covariate_keys=["batch"], max_epochs=5, **TRAIN)
    check = unchanged(adata)
    # condition is no covariate (unsupervised contrast) but every sample's condition follows from its batch
    with pytest.raises(ValueError, match=r"confounded with the model's covariate\(s\) \['batch'\]"):
        gdx.tl.generative_de(adata, model, contrast=["condition", "B", "A"])
    one = adata.obs["condition"].astype(str).to_numpy().copy()
    one[0] = "C"
    adata.obs["one"] = one
    check = unchanged(adata)
    with pytest.raises(ValueError, match="'C' of `obs\\['one'\\]` has 1 sample"):
        gdx.tl.generative_de(adata, model, contrast=["one", "C", "B"])
    with pytest.raises(ValueError, match="not found"):
        gdx.tl.generative_de(adata, model, contrast=["one", "D", "B"])
    check()


def test_counterfactual_de_with_covariate():
    adata = _data(n_samples=8, n_genes=150, seed=1)
    model = gdx.tl.nbvae(adata, categorical_covariate_keys=["condition"], max_epochs=30, **TRAIN)
    gdx.tl.generative_de(adata, model, groupby="condition", group1="B", group2="A")
    t = adata.varm["nbvae_de"]
    assert adata.uns["nbvae_de"]["params"]["counterfactual"] is True
    # counterfactual draws: the log fold change of the condition coefficient (shared by every sample)
    coef = model.module.cov_coef.detach().numpy()[:, 0] / np.log(2)
    assert np.corrcoef(t["log2FoldChange"], coef)[0, 1] > 0.99


def test_de_table_kernel():
    rng = np.random.default_rng(0)
    n_genes = 2000
    effect = np.where(np.arange(n_genes) < 200, rng.choice([-2.0, 2.0], n_genes), 0.0)
    estimate = effect + rng.normal(0, 0.4, n_genes)  # one noisy estimate per gene, standard error 0.4
    draws = estimate + rng.normal(0, 0.4, (400, n_genes))
    flat = de_table(draws, delta=0.25, ci_level=0.9, fdr_target=0.05, lfc_prior="flat")
    adapt = de_table(draws, delta=0.25, ci_level=0.9, fdr_target=0.05, lfc_prior="adaptive")
    null = effect == 0
    # a flat prior calls many null genes (their posterior mass beyond |0.25| is large); the adaptive prior does not
    assert flat["is_de"][null].mean() > adapt["is_de"][null].mean()
    fdr = (adapt["is_de"] & null).sum() / max(adapt["is_de"].sum(), 1)
    assert fdr <= 0.1 and adapt["is_de"][~null].mean() > 0.8
    cover = ((adapt["lfc_lower"] <= effect) & (effect <= adapt["lfc_upper"])).mean()
    assert cover >= 0.85
    bad = draws.copy()
    bad[:, 3] = np.nan
    t = de_table(bad, delta=0.25, ci_level=0.9, fdr_target=0.05)
    assert np.isnan(t.loc[3, "log2FoldChange"]) and not t.loc[3, "is_de"]


# ------------------------------------------------------------------------------------------------ latent_path


def test_latent_path_contract(fitted, tmp_path):
    adata, model = fitted
    genes = list(adata.var_names[:5])
    gdx.tl.latent_path(adata, model, start=("condition", "A"), end=("condition", "B"), n_points=7, genes=genes)
    rec = adata.uns["latent_path"]
    z = adata.obsm["X_nbvae"]
    cond = adata.obs["condition"].to_numpy()
    np.testing.assert_allclose(rec["params"]["start"], z[cond == "A"].mean(0), rtol=1e-6)
    np.testing.assert_allclose(rec["params"]["end"], z[cond == "B"].mean(0), rtol=1e-6)
    assert rec["params"]["start_label"] == "A" and rec["params"]["end_label"] == "B"
    np.testing.assert_allclose(rec["t"], np.linspace(0, 1, 7))
    assert rec["latent"].shape == (7, 2)
    np.testing.assert_allclose(rec["latent"][0], rec["params"]["start"])
    expr = rec["expression"]
    assert list(expr.columns) == genes and expr.shape == (7, 5)
    np.testing.assert_allclose(expr.to_numpy(), model.decode_latent(rec["latent"])[:, :5], rtol=1e-6)
    # a log-linear decoder is exponential along a straight line: log expression is linear in t
    logs = np.log(expr.to_numpy())
    np.testing.assert_allclose(np.diff(logs, 2, axis=0), 0, atol=1e-4)
    # decoded at a sample's latent mean equals that sample's normalised decoded mean
    np.testing.assert_allclose(model.decode_latent(z[:1])[0], model.get_decoded_means()[0], rtol=1e-5)
    path = tmp_path / "a.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path).uns["latent_path"]
    np.testing.assert_allclose(back["expression"].to_numpy(), expr.to_numpy())
    assert back["params"]["start_label"] == "A"


def test_latent_path_coordinates_and_errors(fitted, unchanged):
    adata, model = fitted
    gdx.tl.latent_path(adata, model, start=[0.0, 0.0], end=[1.0, -1.0], n_points=3, key_added="p")
    rec = adata.uns["p"]
    assert rec["params"]["start"] == [0.0, 0.0] and "start_label" not in rec["params"]
    assert rec["expression"].shape == (3, adata.n_vars)
    check = unchanged(adata)
    with pytest.raises(ValueError, match="2 finite latent coordinates"):
        gdx.tl.latent_path(adata, model, start=[0.0], end=[1.0, 1.0])
    with pytest.raises(ValueError, match="not found"):
        gdx.tl.latent_path(adata, model, start=("condition", "Z"), end=[1.0, 1.0])
    with pytest.raises(KeyError, match="not in"):
        gdx.tl.latent_path(adata, model, start=[0, 0], end=[1, 1], genes=["nope"])
    with pytest.raises(ValueError, match="n_points"):
        gdx.tl.latent_path(adata, model, start=[0, 0], end=[1, 1], n_points=1)
    check()


# ------------------------------------------------------------------------------------------------ calibration


def _calibration(n_samples, seed, n_genes=2000):
    adata = gdx.datasets.simulate_counts(n_samples=n_samples, n_genes=n_genes, random_state=seed)
    gdx.pp.size_factors(adata)
    model = gdx.tl.nbvae(adata, random_state=seed, **TRAIN)
    gdx.tl.generative_de(adata, model, groupby="condition", group1="B", group2="A")
    t = adata.varm["nbvae_de"]
    truth, de = adata.var["true_log2fc"].to_numpy(), adata.var["is_de"].to_numpy()
    called = t["is_de"].to_numpy()
    fdr = (called & ~de).sum() / max(called.sum(), 1)
    tpr = (called & de).sum() / de.sum()
    cover = ((t["lfc_lower"] <= truth) & (truth <= t["lfc_upper"])).mean()
    return adata, fdr, tpr, cover


@pytest.mark.parametrize(("n_samples", "seed"), [(12, 11), (12, 21), (6, 12), (6, 22)])
def test_calibration_on_simulated_counts(n_samples, seed):
    # 6 vs 6 and 3 vs 3, 10% DE: observed FDR, interval coverage, and power against DESeq2 on the same data
    adata, fdr, tpr, cover = _calibration(n_samples, seed)
    assert fdr <= 0.10
    assert cover >= 0.85
    ref = adata.copy()
    gdx.tl.deseq2(ref, design="~condition", contrast=["condition", "B", "A"])
    de = adata.var["is_de"].to_numpy()
    deseq2_tpr = ((ref.varm["deseq2"]["padj"] < 0.05).to_numpy() & de).sum() / de.sum()
    # the directional criterion (|LFC| > delta in the called direction) is stricter than DESeq2's LFC != 0
    assert tpr >= 0.6 * deseq2_tpr
