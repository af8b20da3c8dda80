import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gendex as gdx
from gendex.stats import ttest_ind


def _shift_data(seed):
    adata = gdx.datasets.simulate_shift(
        n_samples=100, n_genes=1000, n_shift=10, shift_size=4, noise_sd=0.2, missing_p=0.05, seed=seed
    )
    gdx.pp.filter_missing(adata)
    gdx.pp.log2_normalize(adata)
    return adata


@pytest.mark.parametrize("equal_var", [False, True])
def test_kernel_matches_scipy_with_nan(equal_var):
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 1.0, size=(9, 40))
    b = rng.normal(0.0, 2.0, size=(7, 40))
    a[rng.random(a.shape) < 0.15] = np.nan
    b[rng.random(b.shape) < 0.15] = np.nan
    res = ttest_ind(a, b, equal_var=equal_var)
    ref = stats.ttest_ind(a, b, equal_var=equal_var, nan_policy="omit")
    np.testing.assert_allclose(res.statistic, ref.statistic, rtol=1e-10)
    np.testing.assert_allclose(res.pvalue, ref.pvalue, rtol=1e-10)
    np.testing.assert_allclose(res.df, ref.df, rtol=1e-10)
    np.testing.assert_allclose(res.mean1, np.nanmean(a, axis=0))
    np.testing.assert_array_equal(res.n2, (~np.isnan(b)).sum(axis=0))
    np.testing.assert_allclose(res.se, (res.mean1 - res.mean2) / res.statistic)


def test_kernel_degenerate_genes():
    a = np.array([[1.0, 1.0, 2.0, np.nan], [1.0, 1.0, 3.0, np.nan], [1.0, 1.0, 4.0, 5.0]])
    b = np.array([[2.0, 1.0, 2.0, 1.0], [2.0, 1.0, np.nan, 2.0], [2.0, 1.0, np.nan, 3.0]])
    res = ttest_ind(a, b)
    assert res.statistic[0] == -np.inf and res.pvalue[0] == 0.0  # zero variance, different means
    assert np.isnan(res.statistic[1]) and np.isnan(res.pvalue[1])  # zero variance, equal means
    assert np.isnan(res.pvalue[2]) and np.isnan(res.pvalue[3])  # fewer than two values in a group


def test_shifted_genes_on_top_and_fpr(tmp_path):
    adata = _shift_data(44)
    gdx.tl.ttest(adata, groupby="condition", group1="Treatment", group2="Control", layer="log2")
    res = adata.varm["ttest"]
    shifted = adata.var["is_shifted"].to_numpy()
    top10 = res["pvalue"].nsmallest(10).index
    assert adata.var.loc[top10, "is_shifted"].all()
    fpr = float((res["pvalue"][~shifted] < 0.05).mean())
    assert 0.025 <= fpr <= 0.075  # 990 null genes: sd of the FPR is ~0.007
    assert (res["padj"][shifted] < 1e-10).all()
    # shift of 4 on the natural-log scale is about 4 / ln 2 = 5.8 on log2 (the pseudocount shrinks it a little)
    assert (res["log2FoldChange"][shifted] > 5).all()
    np.testing.assert_allclose(res["log2FoldChange"], res["mean1"] - res["mean2"])
    x = adata.layers["log2"]
    np.testing.assert_allclose(res["baseMean"], np.nanmean(x, axis=0))
    rec = adata.uns["ttest"]
    assert list(rec["contrast"]) == ["condition", "Treatment", "Control"]
    assert rec["method"] == "ttest_student"  # Student by default, as R's teaching t.test(var.equal=TRUE)
    path = tmp_path / "t.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(back.varm["ttest"], res)
    assert bool(back.uns["ttest"]["params"]["equal_var"])


def test_fpr_calibrated_over_seeds():
    null_p = []
    for seed in range(10):
        adata = _shift_data(100 + seed)
        gdx.tl.ttest(adata, groupby="condition", group1="Treatment", group2="Control", layer="log2")
        shifted = adata.var["is_shifted"].to_numpy()
        null_p.append(adata.varm["ttest"]["pvalue"].to_numpy()[~shifted])
    null_p = np.concatenate(null_p)
    assert 0.04 <= (null_p < 0.05).mean() <= 0.06
    assert stats.kstest(null_p, "uniform").pvalue > 1e-3


def test_ttest_matches_scipy_on_anndata(adata):
    gdx.pp.log2_normalize(adata, layer="counts")
    gdx.tl.ttest(adata, groupby="condition", group1="B", group2="A", layer="log2", equal_var=True, key_added="st")
    x = adata.layers["log2"]
    b = (adata.obs["condition"] == "B").to_numpy()
    ref = stats.ttest_ind(x[b], x[~b], equal_var=True)
    res = adata.varm["st"]
    np.testing.assert_allclose(res["stat"], ref.statistic, rtol=1e-10)
    np.testing.assert_allclose(res["pvalue"], ref.pvalue, rtol=1e-10)
    assert adata.uns["st"]["method"] == "ttest_student"


@pytest.mark.filterwarnings("ignore:.*raw counts:UserWarning")
def test_ttest_copy_and_warning_on_counts(adata):
    with pytest.warns(UserWarning, match="raw counts"):
        out = gdx.tl.ttest(adata, groupby="condition", group1="B", group2="A", layer="counts", copy=True)
    assert "ttest" in out.varm and "ttest" not in adata.varm
    assert gdx.tl.ttest(adata, groupby="condition", group1="B", group2="A", layer="counts") is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"groupby": "nope", "group1": "B", "group2": "A"}, KeyError, "nope"),
        ({"groupby": "condition", "group1": "Z", "group2": "A"}, ValueError, "'Z' not found"),
        ({"groupby": "condition", "group1": "B", "group2": "B"}, ValueError, "must differ"),
        ({"contrast": ["condition", "B", "B"]}, ValueError, "must differ"),
        ({"contrast": ["condition", "B", "A"], "groupby": "condition"}, ValueError, "once"),
        ({"groupby": "condition", "group1": "B"}, ValueError, "together"),
        ({}, ValueError, "name the comparison"),
        ({"groupby": "condition", "group1": "single", "group2": "A"}, ValueError, "at least 2"),
        ({"groupby": "condition", "group1": "B", "group2": "A", "layer": "nolayer"}, KeyError, "nolayer"),
    ],
)
def test_ttest_bad_input(kwargs, error, match, unchanged):
    adata = gdx.datasets.simulate_shift(n_samples=20, n_genes=30, seed=1)
    adata.obs["condition"] = pd.Categorical(["A"] * 10 + ["B"] * 9 + ["single"])
    check = unchanged(adata)
    with pytest.raises(error, match=match):
        gdx.tl.ttest(adata, **kwargs)
    check()


def test_ttest_refuses_infinite_values(unchanged):
    adata = gdx.datasets.simulate_shift(n_samples=20, n_genes=30, seed=1)
    adata.X[0, 0] = np.inf
    check = unchanged(adata)
    with pytest.raises(ValueError, match="infinite"):
        gdx.tl.ttest(adata, groupby="condition", group1="Treatment", group2="Control")
    check()


def test_ttest_contrast_equals_the_groupby_alias():
    adata = gdx.datasets.simulate_shift(n_samples=20, n_genes=30, seed=1)
    gdx.pp.log2_normalize(adata)
    gdx.tl.ttest(adata, contrast=["condition", "Treatment", "Control"], layer="log2", key_added="c")
    gdx.tl.ttest(adata, groupby="condition", group1="Treatment", group2="Control", layer="log2", key_added="g")
    pd.testing.assert_frame_equal(adata.varm["c"], adata.varm["g"])
    assert list(adata.uns["c"]["contrast"]) == ["condition", "Treatment", "Control"]
