from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gendex.stats import compare_calls
from gendex.stats._compare import ols_line, pearson, spearman


def test_correlations_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    y = 0.6 * x + rng.normal(scale=0.5, size=300)
    y[:20] = np.round(y[:20])  # ties
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], rel=1e-12)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], rel=1e-12)
    slope, intercept = ols_line(x, y)
    np.testing.assert_allclose([slope, intercept], np.polyfit(x, y, 1), rtol=1e-10)


def test_degenerate_inputs_give_nan_without_warnings():
    assert np.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(spearman([2.0, 2.0], [1.0, 2.0]))
    assert np.isnan(pearson([1.0], [2.0]))
    assert all(np.isnan(ols_line([3.0, 3.0], [1.0, 2.0])))
    summary, table = compare_calls([np.nan] * 3, [1.0, 2.0, 3.0], [0.1] * 3, [0.1] * 3)
    assert summary["n_both_finite"] == 0 and np.isnan(summary["agreement"]) and np.isnan(summary["pearson"])
    assert (table["category"] == "untested").all()


def test_compare_calls_categories_and_counts():
    lfc1 = np.array([2.0, -1.0, 0.5, 0.1, 1.5, np.nan, 0.3, -2.0])
    lfc2 = np.array([1.5, -0.2, 0.7, 0.0, np.nan, 0.4, 0.2, 1.0])
    padj1 = np.array([0.001, 0.01, 0.3, 0.9, 0.01, np.nan, np.nan, 0.0])
    padj2 = np.array([0.01, 0.5, 0.02, 0.8, 0.9, 0.3, 0.5, 0.001])
    summary, table = compare_calls(lfc1, lfc2, padj1, padj2, alpha=0.05)
    assert table["category"].tolist() == [
        "both", "only1", "only2", "neither", "untested", "untested", "untested", "both"
    ]  # fmt: skip
    assert list(table["category"].cat.categories) == ["both", "only1", "only2", "neither", "untested"]
    assert table["finite1"].tolist() == [True, True, True, True, True, False, False, True]
    assert table["finite2"].tolist() == [True, True, True, True, False, True, True, True]
    assert summary["n_both_finite"] == 5
    assert (summary["n_finite_only1"], summary["n_finite_only2"]) == (1, 2)
    assert (summary["n_sig_both"], summary["n_sig_only1"], summary["n_sig_only2"], summary["n_sig_neither"]) == (
        2, 1, 1, 1
    )  # fmt: skip
    assert summary["n_sig_both_opposite"] == 1  # the last gene
    assert summary["agreement"] == pytest.approx(3 / 5)
    both = [0, 1, 2, 3, 7]
    assert summary["pearson"] == pytest.approx(stats.pearsonr(lfc1[both], lfc2[both])[0])
    assert summary["slope"] == pytest.approx(np.polyfit(lfc1[both], lfc2[both], 1)[0])


def test_compare_calls_bad_input():
    with pytest.raises(ValueError, match="same length"):
        compare_calls([1.0, 2.0], [1.0], [0.1, 0.1], [0.1])
    with pytest.raises(ValueError, match="alpha"):
        compare_calls([1.0], [1.0], [0.1], [0.1], alpha=0)
