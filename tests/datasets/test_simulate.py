import numpy as np
import pytest

import gendex as gdx


def test_simulate_counts_truth_and_reproducibility():
    a = gdx.datasets.simulate_counts(n_samples=12, n_genes=2000, frac_de=0.1, seed=5)
    b = gdx.datasets.simulate_counts(n_samples=12, n_genes=2000, frac_de=0.1, seed=5)
    c = gdx.datasets.simulate_counts(n_samples=12, n_genes=2000, frac_de=0.1, seed=6)
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
    a = gdx.datasets.simulate_counts(n_samples=12, n_genes=5000, seed=0)
    means = a.X.mean(axis=0)
    assert np.median(means) < np.mean(means) / 2  # long right tail
    high = means > 200
    var = a.X[:, high].var(axis=0)
    assert np.median(var / means[high]) > 5  # far beyond Poisson


def test_simulate_counts_true_lfc_is_recoverable():
    a = gdx.datasets.simulate_counts(n_samples=40, n_genes=1000, frac_de=0.3, seed=2, mean_log=np.log(2000))
    x = a.X / a.obs["true_size_factor"].to_numpy()[:, None]
    grp = a.obs["condition"].to_numpy()
    lfc = np.log2(x[grp == "B"].mean(0) + 1) - np.log2(x[grp == "A"].mean(0) + 1)
    de = a.var["is_de"].to_numpy()
    assert np.corrcoef(lfc[de], a.var["true_log2fc"][de])[0, 1] > 0.9


def test_simulate_counts_more_groups():
    a = gdx.datasets.simulate_counts(n_samples=9, n_genes=100, n_groups=3, seed=0)
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
