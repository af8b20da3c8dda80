"""R parity at 1-3 residual degrees of freedom: R's Monte-Carlo prior variance, its loess, then the whole table.

References: ``tests/data/deseq2_r/small_df.R`` (R 4.2.2, DESeq2 1.38.3) and ``loess.R`` beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gendex._design import design_matrix
from gendex.stats import deseq2_fit, deseq2_wald
from gendex.stats._deseq2._prior_var import (
    BREAKS,
    hist_density,
    kl_prior_var,
    loess_interpolate,
    mc_histograms,
)
from gendex.stats._deseq2._trend import prior_variance

DATA = Path(__file__).resolve().parents[1] / "data" / "deseq2_r"
SUMMARY = pd.read_csv(DATA / "small_df_summary.csv", dtype={"dispPriorVar": float}).set_index("set")
SIM_SETS = [s for s in SUMMARY.index if s.startswith("sim_")]
GSE_SETS = [s for s in SUMMARY.index if s.startswith("gse_")]


def _reference(name: str) -> pd.DataFrame:
    ref = pd.read_csv(DATA / f"{name}_results.csv.gz", index_col=0)
    ref.index = ref.index.astype(str)
    return ref


def _loess_inputs(which: str):
    if which in ("a", "b"):
        x = np.linspace(0, 8, 200)
        y = np.sin(x) + 0.3 * np.cos(17 * x) if which == "a" else np.exp(-x) + 0.05 * np.sin(31 * x**1.3)
        return x, y
    x = np.arange(1, 58) ** 1.5 / 40 - 3
    return x, np.cos(x) + 0.2 * np.sin(11 * x)


@pytest.mark.parametrize("which", ["a", "b", "c"])
def test_loess_matches_r(which):
    ref = pd.read_csv(DATA / "loess_reference.csv")
    ref = ref[ref["set"] == which]
    x, y = _loess_inputs(which)
    fit = loess_interpolate(x, y, ref["x"].to_numpy(), span=float(ref["span"].iloc[0]))
    # the fit is a fixed linear operator on y: only float64 rounding separates the two implementations
    np.testing.assert_allclose(fit, ref["fit"].to_numpy(), rtol=0, atol=1e-10)
    # and it is a smoother, not an interpolator: a wrong span or kernel moves it by far more than that
    other = loess_interpolate(x, y, ref["x"].to_numpy(), span=float(ref["span"].iloc[0]) * 1.5)
    assert np.max(np.abs(other - ref["fit"].to_numpy())) > 1e-3


def test_histogram_is_r_hist():
    # right-closed bins, the lowest one closed: 0.5 falls in (0, 0.5], -10 in [-10, -9.5]; R moves the breaks
    # up by 1e-7 of a bin width, so 0.5 + 1e-9 still falls in (0, 0.5] and 0.5 + 1e-6 in the next bin
    dens = hist_density(np.array([-10.0, 0.5, 0.5 + 1e-9, 0.5 + 1e-6, 0.25, 9.99]))
    counts = dens * 6 * 0.5
    assert counts[0] == 1 and counts[20] == 3 and counts[21] == 1 and counts[39] == 1
    assert counts.sum() == pytest.approx(6)


def test_shipped_monte_carlo_histograms():
    for df in (1, 2, 3):
        h = mc_histograms(df)
        assert h.shape == (200, BREAKS.size - 1)
        # v = 0: log(chi2_df / df) exactly, so bin counts follow the chi-squared distribution's bin probabilities
        from scipy.stats import chi2

        cdf = chi2.cdf(df * np.exp(BREAKS), df)
        prob = np.diff(cdf) / (cdf[-1] - cdf[0])
        expected = h[0].sum() * prob
        assert np.all(np.abs(h[0] - expected) <= 5 * np.sqrt(expected) + 1)
        mids = (BREAKS[:-1] + BREAKS[1:]) / 2
        # more prior variance spreads the draws: the histogram widens along the grid
        sd = [np.sqrt(np.sum(h[i] * (mids - np.sum(h[i] * mids) / h[i].sum()) ** 2) / h[i].sum()) for i in (0, 199)]
        assert sd[1] > sd[0] + 1
    with pytest.raises(ValueError, match="1-3 residual degrees of freedom"):
        mc_histograms(4)


@pytest.mark.parametrize("name", list(SUMMARY.index))
def test_prior_variance_from_r_residuals(name):
    """R's own residuals give R's prior variance: the histograms, divergences and loess are R's."""
    row = SUMMARY.loc[name]
    ref = _reference(name)
    ok = ref["dispGeneEst"].notna() & (ref["dispGeneEst"] >= 1e-6)
    resid = np.log(ref["dispGeneEst"][ok].to_numpy()) - np.log(ref["dispFit"][ok].to_numpy())
    df = int(row["n_samples"] - row["n_coefs"])
    assert kl_prior_var(resid, df) == pytest.approx(row["dispPriorVar"], abs=1e-6)
    pv, _ = prior_variance(ref["dispGeneEst"].to_numpy(), ref["dispFit"].to_numpy(), row.n_samples, row.n_coefs, 1e-8)
    assert pv == pytest.approx(row["dispPriorVar"], abs=1e-6)


def _fit_and_test(counts, obs, row):
    x = design_matrix(obs, row["design"])
    fit = deseq2_fit(counts, x.to_numpy(), coef_names=list(x.columns))
    factor, test, ref_level = row["factor"], str(row["test"]), str(row["reference"])
    c = np.zeros(x.shape[1])
    c[list(x.columns).index(f"{factor}[T.{test}]")] = 1.0
    levels = obs[factor].astype(str)
    masks = ((levels == test).to_numpy(), (levels == ref_level).to_numpy())
    return fit, deseq2_wald(fit, c, alpha=0.1, contrast_samples=masks)


def _assert_matches_r(fit, res, ref, row):
    assert fit.prior_disp_var == pytest.approx(row["dispPriorVar"], abs=1e-6)
    lfc, lfc_r = res["log2FoldChange"].to_numpy(), ref["log2FoldChange"].to_numpy()
    assert np.array_equal(np.isnan(lfc), np.isnan(lfc_r))
    ok = ~np.isnan(lfc)
    d = np.abs(lfc[ok] - lfc_r[ok])
    if row["design"] == "~condition" or row["design"] == "~celltype":
        # one factor: the GLM means are the group means, so both land on the same optimum (R's table has 10
        # significant digits)
        assert np.max(d) <= 1e-6
    else:
        # several factors: IRLS stops where the deviance changes by less than 1e-8 relative, which leaves the
        # coefficients uncertain by about sqrt(1e-8) of their scale along flat directions: rounding-level
        # differences (Cholesky here, QR in R) move the stopping point there
        assert np.quantile(d, 0.99) <= 1e-4
        assert np.max(d) <= 1e-2
    assert np.array_equal(res["padj"].isna().to_numpy(), ref["padj"].isna().to_numpy())
    assert np.array_equal(res["pvalue"].isna().to_numpy(), ref["pvalue"].isna().to_numpy())
    for level in (0.05, 0.1):
        assert np.array_equal((res["padj"] < level).to_numpy(), (ref["padj"] < level).to_numpy())
    assert res.attrs["filterThreshold"] == pytest.approx(float(row["filterThreshold"]), rel=1e-8)


@pytest.mark.parametrize("name", SIM_SETS)
def test_small_df_simulated_matches_r(name):
    row = SUMMARY.loc[name]
    counts = pd.read_csv(DATA / f"{name}_counts.csv.gz", index_col=0)
    obs = pd.read_csv(DATA / f"{name}_coldata.csv", index_col=0).astype(str)
    fit, res = _fit_and_test(counts.to_numpy().T, obs, row)
    _assert_matches_r(fit, res, _reference(name), row)


@pytest.mark.parametrize("name", GSE_SETS)
def test_small_df_gse60450_subsets_match_r(name, _gse60450_session):
    row = SUMMARY.loc[name]
    ad = _gse60450_session
    ref = _reference(name)
    samples = row["samples"].split(";")
    by_name = pd.Series(np.arange(ad.n_obs), index=ad.obs["name"].astype(str).to_numpy())
    rows = by_name.loc[samples].to_numpy()
    cols = ad.var_names.get_indexer(ref.index)
    assert (cols >= 0).all()
    counts = np.asarray(ad.layers["counts"])[np.ix_(rows, cols)]
    obs = ad.obs.iloc[rows][["celltype", "status"]].astype(str)
    fit, res = _fit_and_test(counts, obs, row)
    _assert_matches_r(fit, res, ref, row)
