"""R parity of DESeq2's local dispersion trend and independent filtering on nearly-Poisson data with tied low means.

References: ``tests/data/deseq2_r/tied_low_means.R`` and ``locfit.R`` (R 4.2.2, DESeq2 1.38.3, locfit 1.5-9.7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gendex.stats import deseq2_fit, deseq2_wald
from gendex.stats._deseq2 import independent_filtering
from gendex.stats._deseq2._locfit import locfit_trend

DATA = Path(__file__).resolve().parents[1] / "data" / "deseq2_r"


@pytest.mark.parametrize("n", [60, 400, 1500])
def test_local_trend_matches_locfit(n):
    ref = pd.read_csv(DATA / "locfit_reference.csv")
    ref = ref[ref["n"] == n]
    i = np.arange(1, n + 1)
    m = np.exp(np.linspace(-2, 10, n) + 0.3 * np.sin(7 * i))
    disp = np.exp(np.log(0.05 + 1 / m) + 0.6 * np.sin(13 * i) + 0.2 * np.cos(31 * i))
    fit = locfit_trend(m, disp, 1e-8)(ref["mean"].to_numpy())
    # locfit solves each local least-squares problem by an iterative (Jacobi) eigen decomposition that stops
    # near 1e-8 relative accuracy; the grid reaches beyond the data, where both extrapolate linearly
    np.testing.assert_allclose(fit, ref["fit"].to_numpy(), rtol=1e-6)
    # a plain local quadratic with another bandwidth is far off: the test can tell
    other = locfit_trend(m[::2], disp[::2], 1e-8)(ref["mean"].to_numpy())
    assert np.max(np.abs(other / ref["fit"].to_numpy() - 1)) > 1e-3


@pytest.fixture(scope="module")
def tied():
    counts = pd.read_csv(DATA / "tied_low_means_counts.csv.gz", index_col=0)
    ref = pd.read_csv(DATA / "tied_low_means_results.csv.gz", index_col=0)
    summary = pd.read_csv(DATA / "tied_low_means_summary.csv", index_col=0)["value"]
    numrej = pd.read_csv(DATA / "tied_low_means_numrej.csv")
    return counts, ref, summary, numrej


def test_filter_on_r_pvalues_is_r_filter(tied):
    _, ref, summary, numrej = tied
    assert (ref["baseMean"] < 0.3).sum() > 1000  # many tied low means
    padj, thr, theta, table = independent_filtering(ref["baseMean"].to_numpy(), ref["pvalue"].to_numpy(), 0.1)
    np.testing.assert_array_equal(table["numRej"].to_numpy(), numrej["numRej"].to_numpy())
    assert theta == pytest.approx(summary["filterTheta"], abs=1e-12)
    # R's table has 10 significant digits of baseMean
    assert thr == pytest.approx(summary["filterThreshold"], rel=1e-8)
    np.testing.assert_array_equal(np.isnan(padj), ref["padj"].isna().to_numpy())


def test_nearly_poisson_replicates_match_r(tied):
    counts, ref, summary, _ = tied
    cond = np.repeat([0.0, 1.0], 5)
    design = np.column_stack([np.ones(10), cond])
    with pytest.warns(UserWarning, match="local regression was substituted"):
        fit = deseq2_fit(counts.to_numpy().T, design, coef_names=["Intercept", "condition[T.B]"])
    assert fit.fit_type == "local"
    ok = ref["dispFit"].notna().to_numpy()
    np.testing.assert_allclose(fit.fitted_dispersions[ok], ref["dispFit"].to_numpy()[ok], rtol=1e-6)
    res = deseq2_wald(fit, "condition[T.B]", alpha=0.1, contrast_samples=(cond == 1, cond == 0))
    assert res.attrs["filterThreshold"] == pytest.approx(summary["filterThreshold"], rel=1e-8)
    assert res.attrs["filterTheta"] == pytest.approx(summary["filterTheta"], abs=1e-12)
    na_agree = np.mean(res["padj"].isna().to_numpy() == ref["padj"].isna().to_numpy())
    assert na_agree >= 0.999
    assert res["padj"].isna().sum() == summary["n_na_padj"]
    assert (res["padj"] < 0.1).sum() == summary["n_padj_lt_0.1"]
    np.testing.assert_array_equal(res["pvalue"].isna().to_numpy(), ref["pvalue"].isna().to_numpy())
