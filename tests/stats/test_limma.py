import numpy as np
import pandas as pd
import pytest
from scipy import special

from gendex.stats import (
    calc_norm_factors_tmm,
    contrasts_fit,
    ebayes,
    fit_f_dist,
    lm_fit,
    lowess,
    squeeze_var,
    tmixture,
    top_table,
    trigamma_inverse,
    voom,
)


@pytest.fixture
def two_group_design():
    return np.column_stack([np.ones(8), np.repeat([0.0, 1.0], 4)])


# ---------------------------------------------------------------------------------------------------- TMM


def test_tmm_recovers_composition_bias():
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 100.0, size=2000)
    mu = np.tile(base, (4, 1))
    mu[2:, :200] *= 8.0  # 10% of genes strongly up in samples 2 and 3: their other genes look "down"
    counts = rng.poisson(mu)
    f = calc_norm_factors_tmm(counts)
    assert np.isclose(np.exp(np.log(f).mean()), 1.0)
    # effective library sizes of the unchanged genes must agree: lib * f proportional to the true depth (1)
    lib = counts.sum(axis=1)
    true_comp = np.array([1.0, 1.0, 1.0, 1.0]) * base.sum() / mu.sum(axis=1)
    expected = true_comp * mu.sum(axis=1) / lib  # = base.sum() / lib
    expected /= np.exp(np.log(expected).mean())
    np.testing.assert_allclose(1 / f / (1 / expected), 1.0, atol=0.02)
    assert f[2] < 0.75 * f[0]


def test_tmm_identical_samples_and_reference_choice():
    rng = np.random.default_rng(1)
    counts = np.tile(rng.poisson(30, size=500), (3, 1))
    np.testing.assert_allclose(calc_norm_factors_tmm(counts), 1.0)
    counts = rng.poisson(rng.gamma(2, 50, size=(1, 800)) * np.array([[1.0], [1.5], [0.7], [1.2]]))
    f_default = calc_norm_factors_tmm(counts)
    lib = counts.sum(axis=1)
    uq = np.quantile(counts[:, counts.sum(0) > 0], 0.75, axis=1) / lib
    ref = int(np.argmin(np.abs(uq - uq.mean())))
    np.testing.assert_allclose(calc_norm_factors_tmm(counts, ref_sample=ref), f_default)
    assert not np.allclose(calc_norm_factors_tmm(counts, ref_sample=(ref + 1) % 4), f_default, rtol=1e-10)


def test_tmm_unweighted_and_errors():
    rng = np.random.default_rng(2)
    counts = rng.poisson(40, size=(3, 300))
    f = calc_norm_factors_tmm(counts, do_weighting=False)
    assert f.shape == (3,) and np.all(np.abs(np.log(f)) < 0.1)
    with pytest.raises(ValueError, match="library sizes"):
        calc_norm_factors_tmm(np.vstack([counts, np.zeros((1, 300))]))
    with pytest.raises(ValueError, match="ref_sample"):
        calc_norm_factors_tmm(counts, ref_sample=5)
    np.testing.assert_array_equal(calc_norm_factors_tmm(counts[:1]), [1.0])


def test_tmm_matches_edger_on_gse60450(gse60450, reference_dir):
    import gendex as gdx

    gdx.pp.filter_by_expr(gse60450, group="celltype")
    f = calc_norm_factors_tmm(np.asarray(gse60450.layers["counts"]))
    variants = pd.read_csv(reference_dir / "limma_voom_variants.csv")
    row = variants.query("filter == 'cpm_rule' and norm == 'TMM' and not `keep.lib.sizes`").iloc[0]
    r_factors = np.array([float(v) for v in row["norm.factors"].split(";")])
    np.testing.assert_allclose(f, r_factors, rtol=5e-6)  # R printed 6 significant digits


# ---------------------------------------------------------------------------------------------------- lowess


def test_lowess_exact_on_a_line_and_robust_to_outliers():
    x = np.linspace(0, 10, 101)
    xs, ys = lowess(x, 2 * x + 1, f=0.3)
    np.testing.assert_allclose(ys, 2 * xs + 1, atol=1e-10)
    y = np.sin(x)
    y_out = y.copy()
    y_out[50] += 20.0
    _, fit_clean = lowess(x, y, f=0.3)
    _, fit_out = lowess(x, y_out, f=0.3)
    _, fit_out0 = lowess(x, y_out, f=0.3, n_iter=0)
    # the robustness iterations down-weight the outlier: the fit near it stays close to the clean fit
    assert abs(fit_out[50] - fit_clean[50]) < 0.05
    assert abs(fit_out0[50] - fit_clean[50]) > 0.5


def test_lowess_sorts_input_and_matches_statsmodels():
    from statsmodels.nonparametric.smoothers_lowess import lowess as sm_lowess

    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, 400)
    y = np.sin(x) + rng.normal(0, 0.3, 400)
    y[::23] += 3
    xs, ys = lowess(x, y, f=0.5)
    assert np.all(np.diff(xs) >= 0)
    ref = sm_lowess(y, x, frac=0.5, it=3, delta=0.01 * np.ptp(x), return_sorted=True)
    np.testing.assert_allclose(xs, ref[:, 0])
    np.testing.assert_allclose(ys, ref[:, 1], atol=1e-6)
    # delta: interpolated points lie on the segments between fitted ones
    _, ys0 = lowess(x, y, f=0.5, delta=0.0)
    assert np.abs(ys0 - ys).max() < 0.02


def test_lowess_ties_and_errors():
    x = np.repeat(np.arange(20.0), 5)
    y = np.random.default_rng(4).normal(size=100) + x
    xs, ys = lowess(x, y, f=0.4)
    for v in range(20):  # tied x get one fitted value
        assert np.ptp(ys[xs == v]) == 0
    with pytest.raises(ValueError, match="finite"):
        lowess([0.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="length"):
        lowess([0.0, 1.0], [1.0])


# ---------------------------------------------------------------------------------------------------- linear models


def test_lm_fit_matches_per_gene_least_squares(two_group_design):
    rng = np.random.default_rng(5)
    y = rng.normal(size=(8, 30))
    w = rng.uniform(0.2, 3.0, size=(8, 30))
    fit = lm_fit(y, two_group_design, weights=w, coef_names=["a", "b"])
    for g in range(30):
        sw = np.sqrt(w[:, g])
        coef, *_ = np.linalg.lstsq(two_group_design * sw[:, None], y[:, g] * sw, rcond=None)
        np.testing.assert_allclose(fit.coefficients[g], coef, rtol=1e-10)
        res = y[:, g] - two_group_design @ coef
        np.testing.assert_allclose(fit.sigma[g], np.sqrt(np.sum(w[:, g] * res**2) / 6), rtol=1e-10)
        cov = np.linalg.inv(two_group_design.T @ (w[:, g, None] * two_group_design))
        np.testing.assert_allclose(fit.stdev_unscaled[g], np.sqrt(np.diag(cov)), rtol=1e-10)
    np.testing.assert_allclose(fit.amean, y.mean(axis=0))
    assert fit.coef_names == ("a", "b")
    unweighted = lm_fit(y, two_group_design)
    np.testing.assert_allclose(
        unweighted.coefficients, lm_fit(y, two_group_design, weights=np.ones_like(y)).coefficients
    )
    np.testing.assert_array_equal(unweighted.df_residual, 6)


def test_lm_fit_errors(two_group_design):
    y = np.zeros((8, 3))
    with pytest.raises(ValueError, match="rank deficient"):
        lm_fit(y, np.column_stack([two_group_design, two_group_design[:, 1]]))
    with pytest.raises(ValueError, match="non-finite"):
        lm_fit(np.full((8, 3), np.nan), two_group_design)
    with pytest.raises(ValueError, match="weights"):
        lm_fit(y, two_group_design, weights=-np.ones((8, 3)))
    with pytest.raises(ValueError, match="rows"):
        lm_fit(y, two_group_design[:5])


def test_contrasts_fit_equals_reparametrised_fit():
    rng = np.random.default_rng(6)
    groups = np.repeat([0, 1, 2], 4)
    cell_means = np.eye(3)[groups]
    y = rng.normal(size=(12, 25)) + groups[:, None]
    w = rng.uniform(0.5, 2, size=(12, 25))
    fit = lm_fit(y, cell_means, weights=w)
    cf = contrasts_fit(fit, np.array([[0.0, -1.0], [-1.0, 0.0], [1.0, 1.0]]), names=["2-1", "2-0"])
    # the same comparisons as coefficients of a reference-level-2 treatment design
    treat = np.column_stack([np.ones(12), groups == 0, groups == 1]).astype(float)
    ref = lm_fit(y, treat, weights=w)
    np.testing.assert_allclose(cf.coefficients, -ref.coefficients[:, [2, 1]], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cf.stdev_unscaled, ref.stdev_unscaled[:, [2, 1]], rtol=1e-9)
    assert cf.coef_names == ("2-1", "2-0")
    with pytest.raises(ValueError, match="rows"):
        contrasts_fit(fit, [1.0, -1.0])
    with pytest.raises(ValueError, match="not all zero"):
        contrasts_fit(fit, [0.0, 0.0, 0.0])


# ---------------------------------------------------------------------------------------------------- empirical Bayes


def test_trigamma_inverse_roundtrip():
    x = np.array([1e-8, 1e-3, 0.1, 1.0, 10.0, 1e8])
    y = trigamma_inverse(x)
    np.testing.assert_allclose(special.polygamma(1, y[1:5]), x[1:5], rtol=1e-8)
    assert np.isclose(y[0], 1e8) and np.isclose(y[-1], 1e-4)
    assert np.isnan(trigamma_inverse(-1.0)[0])


def test_fit_f_dist_recovers_prior():
    rng = np.random.default_rng(7)
    n, d, d0, s0 = 20000, 4.0, 6.0, 0.5
    sigma2 = s0 * d0 / rng.chisquare(d0, size=n)  # scaled inverse chi-square prior
    s2 = sigma2 * rng.chisquare(d, size=n) / d
    scale, df2 = fit_f_dist(s2, d)
    assert abs(scale - s0) / s0 < 0.05
    assert abs(df2 - d0) / d0 < 0.15
    # no extra variability: df2 infinite and the pooled variance
    s2_flat = rng.chisquare(d, size=n) / d
    scale, df2 = fit_f_dist(s2_flat * 0 + s2_flat.mean(), d)
    assert np.isinf(df2)
    post, prior, df0 = squeeze_var(s2, d)
    np.testing.assert_allclose(post, (d * s2 + df0 * prior) / (d + df0))
    assert post.std() < s2.std()


def test_ebayes_statistics_consistent():
    rng = np.random.default_rng(8)
    design = np.column_stack([np.ones(6), np.repeat([0.0, 1.0], 3)])
    y = rng.normal(size=(6, 2000)) * np.sqrt(0.3 * 5 / rng.chisquare(5, size=2000))
    y[3:, :40] += 3.0
    fit = contrasts_fit(lm_fit(y, design), [0.0, 1.0], names=["B-A"])
    eb = ebayes(fit)
    t = fit.coefficients[:, 0] / fit.stdev_unscaled[:, 0] / np.sqrt(eb.s2_post)
    np.testing.assert_allclose(eb.t[:, 0], t)
    np.testing.assert_allclose(eb.df_total, 4 + eb.df_prior)
    from scipy import stats

    np.testing.assert_allclose(eb.p_value[:, 0], 2 * stats.t.sf(np.abs(t), eb.df_total))
    assert 3 < eb.df_prior < 8 and 0.2 < eb.s2_prior < 0.45
    # B increases with |t| and the true DE genes rank on top
    order = np.argsort(-eb.lods[:, 0])
    assert np.isin(order[:30], np.arange(40)).all()
    tt = top_table(fit, eb, genes=[f"g{i}" for i in range(2000)])
    assert list(tt.columns) == ["logFC", "AveExpr", "t", "P.Value", "adj.P.Val", "B", "SE"]
    assert (tt["adj.P.Val"] >= tt["P.Value"]).all()
    np.testing.assert_allclose(tt["logFC"] / tt["SE"], tt["t"])
    assert top_table(fit, eb, sort=True)["B"].is_monotonic_decreasing


def test_tmixture_limits_and_nan():
    rng = np.random.default_rng(9)
    t = rng.standard_t(5, size=1000)
    v = tmixture(t, np.ones(1000), 5.0, 0.01, (0.1, 4.0))
    assert 0.1 <= v <= 4.0
    assert np.isnan(tmixture(np.array([np.nan]), np.ones(1), 5.0, 0.01, None))
    # a gene with fewer df is put on the scale of the largest df before ranking
    v_mixed = tmixture(t, np.ones(1000), np.r_[np.full(500, 5.0), np.full(500, 50.0)], 0.01, None)
    assert np.isfinite(v_mixed)


# ---------------------------------------------------------------------------------------------------- voom


def test_voom_weights_follow_the_trend(two_group_design):
    rng = np.random.default_rng(10)
    means = np.exp(rng.uniform(np.log(2), np.log(5000), size=1500))
    counts = rng.negative_binomial(10, 10 / (10 + means), size=(8, 1500))
    v = voom(counts, two_group_design)
    lib = counts.sum(axis=1)
    np.testing.assert_allclose(v.log_cpm, np.log2((counts + 0.5) / (lib[:, None] + 1) * 1e6))
    assert np.all(np.diff(v.trend_x) >= 0)
    # low counts are noisier (Poisson + NB): the trend of sqrt(sd) decreases, so weights grow with the mean
    assert v.trend_y[0] > v.trend_y[-1]
    mean_w = v.weights.mean(axis=0)
    assert np.corrcoef(np.log(means), np.log(mean_w))[0, 1] > 0.8
    assert np.all(v.weights > 0)
    with pytest.raises(ValueError, match="two genes"):
        voom(counts[:, :1], two_group_design)
    with pytest.raises(ValueError, match="non-negative"):
        voom(-counts, two_group_design)


def test_voom_all_zero_gene_left_out_of_trend(two_group_design):
    rng = np.random.default_rng(11)
    counts = rng.poisson(50, size=(8, 200))
    counts[:, 5] = 0
    v = voom(counts, two_group_design)
    assert np.isnan(v.sx[5]) and np.isnan(v.sy[5])
    assert v.trend_x.size == 199
    assert np.isfinite(v.weights[:, 5]).all()
