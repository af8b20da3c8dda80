"""tl.deseq2(shrink=...): R's lfcShrink types normal (R parity), ashr (gdx.stats.ash) and apeglm (any two-level
contrast, re-levelled)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gendex as gdx


@pytest.fixture(scope="module")
def three():
    ad = gdx.datasets.simulate_counts(
        n_samples=12, n_genes=300, n_groups=3, frac_de=0.3, mean_log=np.log(30.0), random_state=5
    )
    return ad


def test_normal_matches_r_on_gse60450(_gse60450_session, reference_dir):
    ad = _gse60450_session.copy()
    gdx.pp.filter_genes(ad, min_total_count=10)
    ad.obs["celltype"] = pd.Categorical(ad.obs["celltype"], ["basal", "luminal"])
    ad.obs["status"] = pd.Categorical(ad.obs["status"], ["virgin", "pregnant", "lactate"])
    gdx.tl.deseq2(
        ad, design="~celltype + status", contrast=["celltype", "luminal", "basal"], shrink="normal", alpha=0.1
    )
    ref = pd.read_csv(reference_dir / "deseq2_design_celltype_luminal_vs_basal_lfcShrink_normal.csv", index_col=0)
    ref.index = ref.index.astype(str)
    ref = ref.loc[list(ad.var_names)]
    t = ad.varm["deseq2"]
    # the ridge-penalised IRLS stops on a 1e-8 relative deviance change, as R's; L-BFGS-B where it does not
    assert np.nanmax(np.abs(t["log2FoldChange"] - ref["log2FoldChange"])) <= 1e-4
    assert np.nanmax(np.abs(t["lfcSE"] - ref["lfcSE"])) <= 1e-4
    np.testing.assert_array_equal(t["padj"].isna(), ref["padj"].isna())
    # shrinkage moves the fold changes (the unshrunk MLE is kept beside)
    assert np.nanmax(np.abs(t["log2FoldChange"] - t["log2FoldChange_unshrunk"])) > 0.5
    prior = ad.uns["deseq2"]["beta_prior_var"]
    assert prior["celltype[basal]"] == prior["celltype[luminal]"] and prior["Intercept"] == 1e6


def test_ashr_is_gdx_stats_ash(three):
    ad = three.copy()
    gdx.tl.deseq2(ad, design="~condition", contrast=["condition", "C", "B"], shrink="ashr", svalue=True)
    t = ad.varm["deseq2"]
    ok = t["lfcSE_unshrunk"].notna()
    post = gdx.stats.ash(t["log2FoldChange_unshrunk"][ok].to_numpy(), t["lfcSE_unshrunk"][ok].to_numpy())
    np.testing.assert_allclose(t["log2FoldChange"][ok], post.mean, rtol=1e-10)
    np.testing.assert_allclose(t["lfsr"][ok], post.lfsr(), rtol=1e-10)
    assert (t["log2FoldChange"][ok].abs() <= t["log2FoldChange_unshrunk"][ok].abs() + 1e-12).all()
    order = np.argsort(t["lfsr"][ok].to_numpy())
    assert np.all(np.diff(t["svalue"][ok].to_numpy()[order]) >= -1e-15)
    assert (t["svalue"][ok] <= t["lfsr"][ok] + 1e-15).all()
    # the test statistics are the unshrunk ones
    plain = three.copy()
    gdx.tl.deseq2(plain, design="~condition", contrast=["condition", "C", "B"])
    np.testing.assert_array_equal(plain.varm["deseq2"]["pvalue"], t["pvalue"])


def test_apeglm_any_two_level_contrast_is_the_relevelled_fit(three):
    ad = three.copy()
    gdx.tl.deseq2(ad, design="~condition", contrast=["condition", "C", "B"], shrink="apeglm", key_added="relev")
    manual = three.copy()
    manual.obs["condition"] = manual.obs["condition"].cat.reorder_categories(["B", "A", "C"])
    gdx.tl.deseq2(manual, design="~condition", contrast=["condition", "C", "B"], shrink="apeglm", key_added="relev")
    got, want = ad.varm["relev"], manual.varm["relev"]
    # both shrink the same coefficient of the same re-levelled model; apeGLM's optimiser starts from the two
    # fits' MLEs, which agree within their IRLS tolerance
    np.testing.assert_allclose(got["log2FoldChange"], want["log2FoldChange"], rtol=0, atol=1e-5)
    assert "reference level 'B'" in ad.uns["relev"]["shrink_method"]
    # the unshrunk Wald test is the original fit's
    plain = three.copy()
    gdx.tl.deseq2(plain, design="~condition", contrast=["condition", "C", "B"])
    np.testing.assert_array_equal(plain.varm["deseq2"]["pvalue"], got["pvalue"])
    # and PyDESeq2's own fit and apeGLM on the re-levelled data agree closely
    gdx.tl.deseq2(manual, design="~condition", contrast=["condition", "C", "B"], shrink="apeglm", inference="pydeseq2")
    a, b = got["log2FoldChange"], manual.varm["deseq2"]["log2FoldChange"]
    ok = a.notna() & b.notna()
    assert np.corrcoef(a[ok], b[ok])[0, 1] > 0.99


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"contrast": ["condition", "C", "B"], "svalue": True}, "needs shrink='ashr'"),
        ({"contrast": [0.0, -1.0, 1.0], "shrink": "normal"}, "shrink='ashr'"),
        ({"contrast": ["condition", "C", "B"], "shrink": "normal", "inference": "pydeseq2"}, "inference='batched'"),
        ({"contrast": [["condition[T.C]"], []], "shrink": "apeglm"}, "shrink='ashr'"),
        ({"contrast": ["condition", "C", "B"], "shrink": "apeglm", "inference": "pydeseq2"}, "re-levels"),
        ({"contrast": ["condition", "C", "B"], "shrink": "laplace"}, "'normal', 'ashr' or 'apeglm'"),
    ],
)
def test_bad_shrink_requests_leave_adata_unchanged(three, kwargs, match):
    ad = three.copy()
    before = ad.copy()
    with pytest.raises(ValueError, match=match):
        gdx.tl.deseq2(ad, design="~condition", **kwargs)
    assert set(ad.varm) == set(before.varm) and set(ad.uns) == set(before.uns)
    pd.testing.assert_frame_equal(ad.obs, before.obs)


def test_normal_refuses_interactions(three):
    ad = three.copy()
    ad.obs["batch"] = pd.Categorical(["x", "y"] * 6)
    with pytest.raises(ValueError, match="interactions"):
        gdx.tl.deseq2(ad, design="~condition * batch", contrast=["condition", "C", "A"], shrink="normal")
    assert "deseq2" not in ad.varm
