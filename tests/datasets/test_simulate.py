import numpy as np
import pytest

import gendex as gdx


def test_simulate_counts_truth_and_reproducibility():
    a = gdx.datasets.simulate_counts(n_samples=12, n_genes=2000, frac_de=0.1, random_state=5)
    b = gdx.datasets.simulate_counts(n_samples=12, n_genes=2000, frac_de=0.1, random_state=5)
    c = gdx.datasets.simulate_counts(n_samples=12, n_genes=2000, frac_de=0.1, random_state=6)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
    assert a.X.dtype == np.int64
    np.testing.assert_array_equal(a.layers["counts"], a.X)
    assert a.var["is_de"].sum() == 200
    assert (a.var.loc[~a.var["is_de"], "true_log2fc"] == 0).all()
    assert (a.var.loc[a.var["is_de"], "true_log2fc"].abs() >= 0.5).all()
    assert list(a.obs["condition"].cat.categories) == ["A", "B"]
    assert (a.obs["condition"].value_counts() == 6).all()
    assert np.isclose(np.exp(np.log(a.obs["true_size_factor"]).mean()), 1.0)


def test_simulate_counts_is_long_tailed_and_overdispersed():
    a = gdx.datasets.simulate_counts(n_samples=12, n_genes=5000, random_state=0)
    means = a.X.mean(axis=0)
    assert np.median(means) < np.mean(means) / 2  # long right tail
    high = means > 200
    var = a.X[:, high].var(axis=0)
    assert np.median(var / means[high]) > 5  # far beyond Poisson


def test_simulate_counts_true_lfc_is_recoverable():
    a = gdx.datasets.simulate_counts(n_samples=40, n_genes=1000, frac_de=0.3, random_state=2, mean_log=np.log(2000))
    x = a.X / a.obs["true_size_factor"].to_numpy()[:, None]
    grp = a.obs["condition"].to_numpy()
    lfc = np.log2(x[grp == "B"].mean(0) + 1) - np.log2(x[grp == "A"].mean(0) + 1)
    de = a.var["is_de"].to_numpy()
    assert np.corrcoef(lfc[de], a.var["true_log2fc"][de])[0, 1] > 0.9


def test_simulate_counts_more_groups():
    a = gdx.datasets.simulate_counts(n_samples=9, n_genes=100, n_groups=3, random_state=0)
    assert list(a.obs["condition"].cat.categories) == ["A", "B", "C"]
    assert "true_log2fc_C" in a.var


def test_simulate_shift_truth_and_missingness():
    a = gdx.datasets.simulate_shift(n_samples=100, n_genes=1000, n_shift=10, shift_size=4, missing_p=0.05, seed=44)
    b = gdx.datasets.simulate_shift(n_samples=100, n_genes=1000, n_shift=10, shift_size=4, missing_p=0.05, seed=44)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.var["is_shifted"].sum() == 10
    assert 0.04 < np.isnan(a.X).mean() < 0.06
    treat = (a.obs["condition"] == "Treatment").to_numpy()
    lx = np.log(a.X)
    diff = np.nanmean(lx[treat], 0) - np.nanmean(lx[~treat], 0)
    assert np.allclose(diff[:10], 4, atol=0.2)
    assert np.abs(diff[10:]).max() < 0.3


def test_simulators_reject_bad_parameters():
    with pytest.raises(ValueError, match="frac_de"):
        gdx.datasets.simulate_counts(frac_de=1.5)
    with pytest.raises(ValueError, match="n_shift"):
        gdx.datasets.simulate_shift(n_genes=5, n_shift=10)


# ------------------------------------------------------------------------------ optional structure (issue #10)


def test_default_data_are_unchanged_by_the_new_options():
    """Today's seed-0 data, pinned by a few values, and the structure drawn from its own generator."""
    a = gdx.datasets.simulate_counts(n_samples=12, n_genes=300, random_state=0)
    assert set(a.obs.columns) == {"condition", "true_size_factor"} and not a.obsm and not a.varm
    assert set(a.var.columns) == {"is_de", "true_log2fc", "true_base_mean", "true_dispersion"}
    b = gdx.datasets.simulate_counts(n_samples=12, n_genes=300, random_state=0, n_hidden_factors=2, n_batches=2)
    # the genes, their truth and the size factors do not depend on the structure switched on
    for col in ("is_de", "true_log2fc", "true_base_mean", "true_dispersion"):
        np.testing.assert_array_equal(a.var[col], b.var[col])
    np.testing.assert_array_equal(a.obs["true_size_factor"], b.obs["true_size_factor"])
    assert not np.array_equal(a.X, b.X)


def test_seed_is_a_deprecated_alias_of_random_state():
    a = gdx.datasets.simulate_counts(n_samples=6, n_genes=100, random_state=3)
    with pytest.warns(FutureWarning, match="random_state"):
        b = gdx.datasets.simulate_counts(n_samples=6, n_genes=100, seed=3)
    np.testing.assert_array_equal(a.X, b.X)


def test_hidden_factors_explain_more_variance_than_the_contrast():
    a = gdx.datasets.simulate_counts(n_samples=12, n_genes=3000, n_hidden_factors=3, random_state=1)
    scores, loadings = a.obsm["true_hidden_factors"], a.varm["true_hidden_loadings"]
    assert scores.shape == (12, 3) and loadings.shape == (3000, 3)
    group_b = (a.obs["condition"] == "B").to_numpy()
    # scores are uncorrelated with the groups in the sample: the group means differ by the true log2FC only
    np.testing.assert_allclose(scores[group_b].mean(0), scores[~group_b].mean(0), atol=1e-12)
    hidden = scores @ loadings.T
    contrast = a.var["true_log2fc"].to_numpy()[None, :] * group_b[:, None]
    hidden_var = hidden.var(axis=0).sum()
    contrast_var = contrast.var(axis=0).sum()
    assert hidden_var > 3 * contrast_var
    # and the counts carry it: the top principal component of log counts follows a hidden factor, not the groups
    x = np.log1p(a.X / a.obs["true_size_factor"].to_numpy()[:, None])
    x = x[:, a.X.mean(0) > 50]
    u, _, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
    pc1 = u[:, 0]
    assert max(abs(np.corrcoef(pc1, scores[:, k])[0, 1]) for k in range(3)) > 0.7
    assert abs(np.corrcoef(pc1, group_b)[0, 1]) < 0.7
    # stronger loadings, more hidden variance
    weak = gdx.datasets.simulate_counts(
        n_samples=12, n_genes=3000, n_hidden_factors=3, hidden_factor_sd=0.1, random_state=1
    )
    assert (weak.obsm["true_hidden_factors"] @ weak.varm["true_hidden_loadings"].T).var(0).sum() < hidden_var / 10


def test_paired_design_shares_donor_effects_within_a_pair():
    a = gdx.datasets.simulate_counts(n_donors=5, n_genes=4000, donor_sd=0.8, mean_log=np.log(3000), random_state=2)
    assert a.n_obs == 10
    tab = a.obs.groupby(["donor", "condition"], observed=False).size()
    assert (tab == 1).all()  # each donor once in each condition
    effect = a.varm["true_donor_effect"]
    assert effect.shape == (4000, 5)
    assert 0.7 < effect.std() < 0.9
    # within-donor log ratios cancel the donor effect: they vary much less than ratios across donors
    x = np.log2(a.X / a.obs["true_size_factor"].to_numpy()[:, None] + 1)
    null = ~a.var["is_de"].to_numpy()
    donors = a.obs["donor"].to_numpy()
    b_rows, a_rows = (a.obs["condition"] == "B").to_numpy(), (a.obs["condition"] == "A").to_numpy()
    order_b = np.argsort(donors[b_rows])
    order_a = np.argsort(donors[a_rows])
    paired = x[b_rows][order_b][:, null] - x[a_rows][order_a][:, null]
    shifted = x[b_rows][np.roll(order_b, 1)][:, null] - x[a_rows][order_a][:, null]
    assert paired.var() < 0.6 * shifted.var()
    with pytest.raises(ValueError, match="n_donors"):
        gdx.datasets.simulate_counts(n_samples=12, n_donors=5)


def test_batches_are_balanced_and_carry_their_effects():
    a = gdx.datasets.simulate_counts(n_samples=12, n_genes=500, n_batches=3, batch_sd=0.5, random_state=0)
    tab = a.obs.groupby(["batch", "condition"], observed=False).size()
    assert (tab == 2).all()
    assert a.varm["true_batch_effect"].shape == (500, 3)
    p = gdx.datasets.simulate_counts(n_donors=4, n_genes=50, n_batches=2, random_state=0)
    # both samples of a donor share the batch
    assert (p.obs.groupby("donor", observed=False)["batch"].nunique() == 1).all()


def test_heavy_tailed_dispersions():
    a = gdx.datasets.simulate_counts(
        n_genes=5000, disp_scatter=0.7, disp_outlier_frac=0.04, disp_outlier_fold=(5, 50), random_state=4
    )
    base = gdx.datasets.simulate_counts(n_genes=5000, random_state=4)
    ratio = a.var["true_dispersion"] / base.var["true_dispersion"]
    out = a.var["dispersion_outlier"].to_numpy()
    assert out.sum() == 200
    trend = 0.05 + 1.5 / a.var["true_base_mean"].to_numpy()
    log_ratio = np.log(a.var["true_dispersion"].to_numpy() / trend)
    assert 0.6 < log_ratio[~out].std() < 0.8
    # outliers lie 5-50x above where the scatter alone puts them
    scatter_only = gdx.datasets.simulate_counts(n_genes=5000, disp_scatter=0.7, random_state=4)
    fold = (a.var["true_dispersion"] / scatter_only.var["true_dispersion"]).to_numpy()
    assert np.allclose(fold[~out], 1) and (fold[out] >= 5).all() and (fold[out] <= 50).all()
    assert (np.exp(log_ratio) > 5).mean() > 0.03  # a few percent far above the trend
    assert ratio.notna().all()


def test_unequal_group_sizes():
    a = gdx.datasets.simulate_counts(group_sizes=(4, 9), n_genes=100, random_state=0)
    assert a.obs["condition"].value_counts().to_dict() == {"A": 4, "B": 9}
    three = gdx.datasets.simulate_counts(group_sizes=[2, 3, 5], n_genes=50, n_hidden_factors=1)
    assert list(three.obs["condition"].cat.categories) == ["A", "B", "C"] and three.n_obs == 10
    with pytest.raises(ValueError, match="group_sizes"):
        gdx.datasets.simulate_counts(n_samples=12, group_sizes=(4, 9))
    with pytest.raises(ValueError, match="group_sizes"):
        gdx.datasets.simulate_counts(group_sizes=(4, 0))


def test_structured_simulation_is_reproducible_and_leaves_global_rngs_alone():
    kw = {"n_donors": 4, "n_genes": 200, "n_batches": 2, "n_hidden_factors": 2, "disp_outlier_frac": 0.05}
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = gdx.datasets.simulate_counts(random_state=7, **kw)
    b = gdx.datasets.simulate_counts(random_state=7, **kw)
    c = gdx.datasets.simulate_counts(random_state=8, **kw)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.obsm["true_hidden_factors"], b.obsm["true_hidden_factors"])
    assert not np.array_equal(a.X, c.X)
    assert a.uns["simulation"]["params"]["n_donors"] == 4


def test_structured_simulation_survives_h5ad(tmp_path):
    import anndata as ad

    a = gdx.datasets.simulate_counts(n_donors=3, n_genes=40, n_batches=3, n_hidden_factors=2, disp_outlier_frac=0.1)
    a.write_h5ad(tmp_path / "sim.h5ad")
    back = ad.read_h5ad(tmp_path / "sim.h5ad")
    np.testing.assert_array_equal(back.varm["true_donor_effect"], a.varm["true_donor_effect"])
    assert back.uns["simulation"]["params"]["disp_outlier_fold"].tolist() == [5.0, 50.0]


def test_structure_options_reject_bad_values():
    for kw, name in (
        ({"n_batches": 0}, "n_batches"),
        ({"n_hidden_factors": -1}, "n_hidden_factors"),
        ({"hidden_factor_sd": -0.1}, "hidden_factor_sd"),
        ({"disp_outlier_frac": 2.0}, "disp_outlier_frac"),
        ({"disp_outlier_fold": (10, 5)}, "disp_outlier_fold"),
        ({"n_donors": 0}, "n_donors"),
        ({"n_donors": 3, "group_sizes": (3, 3)}, "group_sizes"),
    ):
        with pytest.raises(ValueError, match=name):
            gdx.datasets.simulate_counts(n_genes=10, **kw)
