import anndata as ad
import numpy as np
import pandas as pd
import pytest

import gendex as gdx

R_PRIORS = {"TMM": (0.705888973983555, 2.71705948425542), "none": (0.765658226408443, 3.69525382390528)}
R_FILES = {"TMM": "TMM", "none": "noTMM"}


@pytest.fixture
def gse_filtered(gse60450):
    gdx.pp.filter_by_expr(gse60450, group="celltype")
    return gse60450


@pytest.mark.parametrize("normalization", ["TMM", "none"])
def test_parity_with_r_limma_on_gse60450(gse_filtered, reference_dir, normalization, tmp_path):
    adata = gse_filtered
    assert adata.n_vars == 14453
    gdx.tl.limma_voom(adata, design="~celltype", contrast=["celltype", "luminal", "basal"], normalization=normalization)
    ref = pd.read_csv(
        reference_dir / f"limma_voom_cpmrule_{R_FILES[normalization]}_luminal_vs_basal_topTable.csv",
        dtype={"gene": str},
    ).set_index("gene")
    res = adata.varm["limma_voom"]
    ref = ref.loc[res.index]
    assert np.corrcoef(res["t"], ref["t"])[0, 1] >= 0.9999
    calls, r_calls = res["padj"] < 0.05, ref["adj.P.Val"] < 0.05
    assert (calls == r_calls).mean() >= 0.998
    # in fact the implementation reproduces R to rounding
    np.testing.assert_allclose(res["t"], ref["t"], rtol=1e-8)
    np.testing.assert_allclose(res["log2FoldChange"], ref["logFC"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res["AveExpr"], ref["AveExpr"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(res["B"], ref["B"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res["pvalue"], ref["P.Value"], rtol=1e-8)
    np.testing.assert_allclose(res["padj"], ref["adj.P.Val"], rtol=1e-8)
    s2_r, df_r = R_PRIORS[normalization]
    rec = adata.uns["limma_voom"]
    assert abs(rec["s2_prior"] / s2_r - 1) < 0.01 and abs(rec["df_prior"] / df_r - 1) < 0.01
    assert np.isclose(rec["s2_prior"], s2_r, rtol=1e-8) and np.isclose(rec["df_prior"], df_r, rtol=1e-8)
    assert int(calls.sum()) == int(r_calls.sum()) == (8640 if normalization == "TMM" else 6509)
    # h5ad round trip
    path = tmp_path / "limma.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(back.varm["limma_voom"], res)
    assert np.isclose(back.uns["limma_voom"]["s2_prior"], rec["s2_prior"])
    np.testing.assert_allclose(back.uns["limma_voom"]["norm_factors"], rec["norm_factors"])
    assert list(back.uns["limma_voom"]["contrast"]) == ["celltype", "luminal", "basal"]


def test_limma_voom_results_schema_and_roundtrip(adata, tmp_path):
    gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    res = adata.varm["limma_voom"]
    expected = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj", "AveExpr", "t", "B"]
    assert list(res.columns) == expected
    assert list(res.index) == list(adata.var_names)
    np.testing.assert_allclose(res["lfcSE"], res["log2FoldChange"] / res["t"])
    np.testing.assert_array_equal(res["baseMean"], res["AveExpr"])
    np.testing.assert_array_equal(res["stat"], res["t"])
    rec = adata.uns["limma_voom"]
    assert rec["method"] == "limma_voom" and rec["design"] == "~condition"
    assert rec["params"]["normalization"] == "TMM"
    assert len(rec["norm_factors"]) == adata.n_obs
    np.testing.assert_allclose(np.exp(np.log(rec["norm_factors"]).mean()), 1.0)
    assert "norm_factors" not in adata.obs  # per-fit outputs live under the key only
    trend = rec["voom"]
    assert len(trend["sx"]) == len(trend["sy"]) == len(trend["trend_x"]) == len(trend["trend_y"])
    # the fold changes follow the truth
    assert np.corrcoef(res["log2FoldChange"], adata.var["true_log2fc"])[0, 1] > 0.7
    path = tmp_path / "a.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(back.varm["limma_voom"], res)
    np.testing.assert_allclose(back.uns["limma_voom"]["voom"]["trend_y"], trend["trend_y"])
    assert gdx.get.de_keys(back) == ["limma_voom"]


def test_limma_voom_copy_and_default_contrast(adata):
    before = adata.copy()
    out = gdx.tl.limma_voom(adata, design="~condition", copy=True, key_added="lv", normalization="none")
    assert "lv" not in adata.varm and "lv" not in adata.uns
    assert list(out.uns["lv"]["contrast"]) == ["condition", "B", "A"]
    np.testing.assert_array_equal(out.uns["lv"]["norm_factors"], 1.0)
    gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"], normalization="none", key_added="x")
    pd.testing.assert_frame_equal(out.varm["lv"], adata.varm["x"])
    np.testing.assert_array_equal(before.layers["counts"], adata.layers["counts"])


def test_limma_voom_multifactor_and_reversed_contrast():
    adata = gdx.datasets.simulate_counts(n_samples=12, n_genes=300, n_groups=3, random_state=3)
    adata.obs["batch"] = pd.Categorical(["x", "y"] * 6)
    gdx.tl.limma_voom(adata, design="~batch + condition", contrast=["condition", "C", "B"], key_added="cb")
    gdx.tl.limma_voom(adata, design="~batch + condition", contrast=["condition", "B", "C"], key_added="bc")
    np.testing.assert_allclose(adata.varm["cb"]["log2FoldChange"], -adata.varm["bc"]["log2FoldChange"])
    np.testing.assert_allclose(adata.varm["cb"]["pvalue"], adata.varm["bc"]["pvalue"])
    truth = adata.var["true_log2fc_C"] - adata.var["true_log2fc_B"]
    assert np.corrcoef(adata.varm["cb"]["log2FoldChange"], truth)[0, 1] > 0.7


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"design": "~nope", "contrast": ["nope", "B", "A"]}, KeyError, "nope"),
        ({"design": "~condition", "contrast": ["condition", "Z", "A"]}, ValueError, "'Z' does not exist"),
        ({"design": "~condition + one", "contrast": ["condition", "B", "A"]}, ValueError, "single level"),
        ({"design": "~condition + dup", "contrast": ["condition", "B", "A"]}, ValueError, "rank deficient"),
        ({"design": "~condition", "contrast": ["condition", "B", "A"], "normalization": "upper"}, ValueError, "TMM"),
        ({"design": "~condition", "contrast": ["condition", "B", "A"], "layer": "nolayer"}, KeyError, "nolayer"),
        ({"design": "~1"}, ValueError, "only an intercept"),
    ],
)
def test_limma_voom_bad_input(adata, unchanged, kwargs, error, match):
    adata.obs["one"] = "x"
    adata.obs["dup"] = adata.obs["condition"].astype(str).map({"A": "u", "B": "v"})
    check = unchanged(adata)
    with pytest.raises(error, match=match):
        gdx.tl.limma_voom(adata, **kwargs)
    check()


def test_limma_voom_refuses_non_counts(adata, unchanged):
    adata.layers["logged"] = np.log1p(adata.layers["counts"].astype(float))
    adata.obs["one"] = "x"
    check = unchanged(adata)
    with pytest.raises(ValueError, match="non-integer"):
        gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"], layer="logged")
    adata.layers["neg"] = -adata.layers["counts"]
    check = unchanged(adata)
    with pytest.raises(ValueError, match="negative"):
        gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"], layer="neg")
    check()


def test_limma_voom_empty_sample(adata, unchanged):
    adata.layers["counts"][0] = 0
    check = unchanged(adata)
    with pytest.raises(ValueError, match="all-zero"):
        gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    check()


def test_limma_voom_sparse_counts_same_result(adata):
    from scipy import sparse

    dense = adata.copy()
    adata.layers["counts"] = sparse.csr_matrix(adata.layers["counts"])
    for a in (adata, dense):
        gdx.tl.limma_voom(a, design="~condition", contrast=["condition", "B", "A"])
    pd.testing.assert_frame_equal(adata.varm["limma_voom"], dense.varm["limma_voom"])
