from __future__ import annotations

import time

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import gendex as gdx
from gendex.tl._deseq2 import DISPERSION_COLUMNS, NA_REASONS, RESULT_COLUMNS, na_reasons

PYDESEQ2 = {"inference": "pydeseq2", "n_cpus": 1}


def _roundtrip(adata, tmp_path):
    path = tmp_path / "deseq2.h5ad"
    adata.write_h5ad(path)
    return ad.read_h5ad(path)


@pytest.fixture
def three_groups():
    """12 samples, condition A/B/C (4 each), 400 genes, many of low counts; an all-zero gene, a Cook's outlier gene."""
    adata = gdx.datasets.simulate_counts(
        n_samples=12, n_genes=400, n_groups=3, frac_de=0.3, mean_log=np.log(20.0), mean_sdlog=2.0, random_state=3
    )
    counts = adata.layers["counts"].copy()
    counts[:, 0] = 0
    counts[:, 1] = np.array([100, 110, 95, 105, 98, 102, 107, 99, 101, 96, 104, 20000])
    adata.layers["counts"] = counts
    adata.obs["batch"] = pd.Categorical(["x", "y"] * 6)
    return adata


def test_na_reasons_kernel():
    pvalue = np.array([0.1, np.nan, 0.5, np.nan, 0.01])
    padj = np.array([0.2, np.nan, np.nan, np.nan, 0.03])
    all_zero = np.array([False, False, False, True, False])
    assert na_reasons(all_zero, pvalue, padj).tolist() == ["", "cooks_outlier", "independent_filtering", "all_zero", ""]


@pytest.mark.parametrize("inference", ["batched", "pydeseq2"])
def test_schema_and_roundtrip(adata, tmp_path, inference):
    adata.layers["counts"][:, 0] = 0
    gdx.tl.deseq2(adata, design="~condition", contrast=["condition", "B", "A"], inference=inference, n_cpus=1)
    table = adata.varm["deseq2"]
    assert list(table.columns) == [*RESULT_COLUMNS, *DISPERSION_COLUMNS]
    assert list(table.index) == list(adata.var_names)
    assert set(table["na_reason"]) <= set(NA_REASONS)
    assert table.loc["gene_00000", "na_reason"] == "all_zero"
    assert np.isnan(table.loc["gene_00000", "pvalue"])
    assert table.loc["gene_00000", "baseMean"] == 0
    # na_reason is "" exactly where pvalue and padj are finite
    finite = np.isfinite(table["pvalue"]) & np.isfinite(table["padj"])
    assert ((table["na_reason"] == "") == finite).all()
    sf = adata.uns["deseq2"]["size_factors"]
    assert sf.dtype == np.float64 and sf.shape == (adata.n_obs,)
    assert np.all(sf > 0)
    for col in ("dispersions", "genewise_dispersions", "fitted_dispersions", "MAP_dispersions"):
        assert col in table
        assert np.isfinite(table[col].iloc[1:]).all()
    # per-fit outputs live under the key only: nothing shared is written
    assert "size_factors" not in adata.obs and "dispersions" not in adata.var
    uns = adata.uns["deseq2"]
    assert uns["method"] == "deseq2"
    assert uns["inference"] == inference
    assert uns["design"] == "~condition"
    assert list(uns["contrast"]) == ["condition", "B", "A"]
    assert uns["test"] == "wald"
    assert uns["params"]["alpha"] == 0.05
    assert "pydeseq2" in uns["versions"]
    assert uns["prior_disp_var"] > 0
    assert set(uns["trend_coeffs"]) == {"a0", "a1"}
    assert gdx.get.de_keys(adata) == ["deseq2"]

    back = _roundtrip(adata, tmp_path)
    pd.testing.assert_frame_equal(back.varm["deseq2"], table, check_dtype=False)
    assert list(back.uns["deseq2"]["contrast"]) == ["condition", "B", "A"]
    assert back.uns["deseq2"]["params"]["reduced"] == "None"
    np.testing.assert_array_equal(back.uns["deseq2"]["size_factors"], sf)
    # the effect direction follows the truth: B vs A
    ok = np.isfinite(table["log2FoldChange"]) & adata.var["is_de"]
    assert np.corrcoef(table["log2FoldChange"][ok], adata.var["true_log2fc"][ok])[0, 1] > 0.8


def test_default_contrast_is_last_coefficient(adata):
    gdx.tl.deseq2(adata)
    assert list(adata.uns["deseq2"]["contrast"]) == ["condition", "B", "A"]


@pytest.mark.parametrize("inference", ["batched", "pydeseq2"])
def test_na_reason_values(three_groups, inference):
    gdx.tl.deseq2(three_groups, design="~condition", contrast=["condition", "C", "A"], inference=inference, n_cpus=1)
    table = three_groups.varm["deseq2"]
    assert table["na_reason"].iloc[0] == "all_zero"
    assert table["na_reason"].iloc[1] == "cooks_outlier"
    assert np.isnan(table["pvalue"].iloc[1]) and np.isfinite(table["log2FoldChange"].iloc[1])
    filtered = table["na_reason"] == "independent_filtering"
    assert np.isfinite(table.loc[filtered, "pvalue"]).all() and table.loc[filtered, "padj"].isna().all()
    # independently filtered genes are the low-count ones
    assert filtered.sum() > 10
    assert table.loc[filtered, "baseMean"].max() <= table.loc[~filtered & (table["na_reason"] == ""), "baseMean"].max()


def test_filters_off_leave_only_all_zero(three_groups):
    gdx.tl.deseq2(
        three_groups,
        design="~condition",
        contrast=["condition", "C", "A"],
        cooks_filter=False,
        independent_filter=False,
    )
    table = three_groups.varm["deseq2"]
    all_zero = three_groups.layers["counts"].sum(axis=0) == 0
    assert all_zero.sum() >= 1
    assert table["na_reason"].tolist() == ["all_zero" if z else "" for z in all_zero]


@pytest.mark.parametrize("inference", ["batched", "pydeseq2"])
def test_several_contrasts_reuse_one_fit(three_groups, monkeypatch, tmp_path, inference):
    from pydeseq2.dds import DeseqDataSet

    import gendex.stats._deseq2 as engine

    calls = []

    def counting(original):
        def wrapper(*args, **kwargs):
            calls.append(1)
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(DeseqDataSet, "deseq2", counting(DeseqDataSet.deseq2))
    monkeypatch.setattr(engine, "deseq2_fit", counting(engine.deseq2_fit))
    contrasts = [["condition", "B", "A"], ["condition", "C", "A"], ["condition", "C", "B"]]
    gdx.tl.deseq2(three_groups, design="~batch + condition", contrast=contrasts, inference=inference, n_cpus=1)
    assert len(calls) == 1
    keys = ["deseq2_B_vs_A", "deseq2_C_vs_A", "deseq2_C_vs_B"]
    assert sorted(gdx.get.de_keys(three_groups)) == keys
    lfc = {k: three_groups.varm[k]["log2FoldChange"] for k in keys}
    # contrasts are differences of one set of coefficients (the batched engine, like R, sets the LFC of genes
    # with zero counts in both groups of a contrast to 0: leave those out)
    counts = pd.DataFrame(three_groups.layers["counts"]).groupby(three_groups.obs["condition"].to_numpy()).sum()
    ok = (counts > 0).all(axis=0).to_numpy()
    assert ok.sum() > 300
    np.testing.assert_allclose(
        lfc["deseq2_C_vs_B"][ok], (lfc["deseq2_C_vs_A"] - lfc["deseq2_B_vs_A"])[ok], rtol=1e-8, atol=1e-8
    )
    assert list(three_groups.uns["deseq2_C_vs_B"]["contrast"]) == ["condition", "C", "B"]
    back = _roundtrip(three_groups, tmp_path)
    for k in keys:
        pd.testing.assert_frame_equal(back.varm[k], three_groups.varm[k], check_dtype=False)


def test_key_added_list_and_prefix(three_groups):
    contrasts = [["condition", "B", "A"], ["condition", "C", "A"]]
    gdx.tl.deseq2(three_groups, design="~condition", contrast=contrasts, key_added=["b", "c"])
    assert {"b", "c"} <= set(three_groups.varm)
    gdx.tl.deseq2(three_groups, design="~condition", contrast=contrasts, key_added="ds")
    assert {"ds_B_vs_A", "ds_C_vs_A"} <= set(three_groups.varm)


def test_copy(adata):
    snapshot = adata.copy()
    out = gdx.tl.deseq2(adata, design="~condition", contrast=["condition", "B", "A"], copy=True)
    assert isinstance(out, ad.AnnData) and out is not adata
    assert "deseq2" in out.varm and "size_factors" in out.uns["deseq2"]
    assert "deseq2" not in adata.varm and "deseq2" not in adata.uns
    assert set(adata.var.columns) == set(snapshot.var.columns)
    assert gdx.tl.deseq2(adata, design="~condition") is None


def test_sparse_counts_match_dense(adata):
    dense = adata.copy()
    adata.layers["counts"] = sparse.csr_matrix(adata.layers["counts"])
    gdx.tl.deseq2(adata, design="~condition")
    gdx.tl.deseq2(dense, design="~condition")
    pd.testing.assert_frame_equal(adata.varm["deseq2"], dense.varm["deseq2"])


def test_counts_in_x(adata):
    adata.X = adata.layers["counts"].copy()
    del adata.layers["counts"]
    gdx.tl.deseq2(adata, design="~condition", layer=None)
    assert adata.uns["deseq2"]["params"]["layer"] == "X"


@pytest.mark.parametrize("inference", ["batched", "pydeseq2"])
def test_user_adata_not_mutated_beyond_results(adata, inference):
    before = adata.copy()
    gdx.tl.deseq2(adata, design="~condition", inference=inference, n_cpus=1)
    assert type(adata) is ad.AnnData
    np.testing.assert_array_equal(adata.layers["counts"], before.layers["counts"])
    assert set(adata.layers) == set(before.layers)
    assert set(adata.obsm) == set(before.obsm)
    assert set(adata.varm) == {"deseq2"}
    pd.testing.assert_frame_equal(adata.obs, before.obs)  # fit outputs live under the key, not in obs/var
    pd.testing.assert_frame_equal(adata.var, before.var)


def _bad(kind, adata):
    """Mutate `adata` into a bad input and return (kwargs for deseq2, error type, message pattern)."""
    base = {"design": "~condition"}
    counts = adata.layers["counts"]
    if kind == "unknown_column":
        return {**base, "design": "~nope"}, KeyError, "nope"
    if kind == "missing_level":
        return {**base, "contrast": ["condition", "Z", "A"]}, ValueError, "'Z' does not exist"
    if kind == "single_level":
        adata.obs["one"] = "x"
        return {**base, "design": "~one + condition"}, ValueError, "single level"
    if kind == "rank_deficient":
        adata.obs["dup"] = adata.obs["condition"].astype(str).map({"A": "u", "B": "v"})
        return {**base, "design": "~dup + condition"}, ValueError, "rank deficient"
    if kind == "non_integer":
        adata.layers["counts"] = counts.astype(float) + 0.5
        return base, ValueError, "non-integer"
    if kind == "negative":
        c = counts.copy()
        c[0, 0] = -1
        adata.layers["counts"] = c
        return base, ValueError, "negative"
    if kind == "nan":
        c = counts.astype(float)
        c[0, 0] = np.nan
        adata.layers["counts"] = c
        return base, ValueError, "NaN"
    if kind == "empty_sample":
        c = counts.copy()
        c[2] = 0
        adata.layers["counts"] = c
        return base, ValueError, "all-zero counts"
    if kind == "factor_not_in_design":
        adata.obs["batch"] = ["x", "y"] * 4
        return {**base, "contrast": ["batch", "y", "x"]}, ValueError, "not in the design"
    if kind == "reduced_not_nested":
        adata.obs["batch"] = ["x", "y"] * 4
        return {**base, "test": "lrt", "reduced": "~batch"}, ValueError, "not in the full design"
    if kind == "reduced_not_smaller":
        return {**base, "test": "lrt", "reduced": "~condition"}, ValueError, "not nested"
    if kind == "lrt_without_reduced":
        return {**base, "test": "lrt"}, ValueError, "reduced"
    if kind == "reduced_with_wald":
        return {**base, "reduced": "~1"}, ValueError, "only used with test='lrt'"
    if kind == "duplicate_names":
        adata.var_names = ["g"] * adata.n_vars
        return base, ValueError, "duplicate"
    if kind == "duplicate_contrast":
        return {**base, "contrast": [["condition", "B", "A"]] * 2}, ValueError, "duplicate contrasts"
    if kind == "missing_layer":
        return {**base, "layer": "raw"}, KeyError, "raw"
    if kind == "bad_inference":
        return {**base, "inference": "edger"}, ValueError, "inference"
    if kind == "bad_test":
        return {**base, "test": "wilcoxon"}, ValueError, "test"
    if kind == "shrink_non_reference":
        return {**base, "contrast": ["condition", "A", "B"], "shrink": "apeglm"}, ValueError, "reference"
    if kind == "key_count":
        return {**base, "key_added": ["a", "b"]}, ValueError, "key_added"
    if kind == "lrt_two_contrasts":
        adata.obs["batch"] = ["x", "y"] * 4
        contrasts = [["condition", "B", "A"], ["batch", "y", "x"]]
        return (
            {**base, "design": "~batch + condition", "test": "lrt", "reduced": "~1", "contrast": contrasts},
            (ValueError),
            "at most one contrast",
        )
    if kind == "continuous_contrast":
        adata.obs["age"] = np.arange(8.0)
        return {**base, "design": "~age + condition", "contrast": ["age", "1", "0"]}, ValueError, "numeric"
    if kind == "bad_alpha":
        return {**base, "alpha": 1.5}, ValueError, "alpha"
    if kind == "local_with_pydeseq2":
        return {**base, "fit_type": "local", "inference": "pydeseq2"}, ValueError, "local"
    if kind == "shrink_with_lrt":
        return {**base, "test": "lrt", "reduced": "~1", "shrink": "apeglm"}, ValueError, "shrink"
    if kind == "device_with_pydeseq2":
        return {**base, "inference": "pydeseq2", "device": "cuda"}, ValueError, "device"
    if kind == "string_contrast":  # a string is a coefficient name (R's name=)
        return {**base, "contrast": "condition"}, ValueError, "not columns of the design"
    if kind == "device_tpu":
        return {**base, "device": "tpu"}, ValueError, "torch device such as 'cuda'"
    if kind == "numeric_contrast_length":
        return {**base, "contrast": [0.0, 1.0, 1.0]}, ValueError, "one weight per design column"
    if kind == "list_contrast_unknown":
        return {**base, "contrast": [["condition[T.C]"], []]}, ValueError, "not columns of the design"
    if kind == "numeric_levels_continuous":
        adata.obs["batch"] = [1, 2] * 4
        return {**base, "design": "~batch + condition", "contrast": ["batch", 2, 1]}, ValueError, "astype"
    raise AssertionError(kind)


BAD_KINDS = [
    "unknown_column",
    "missing_level",
    "single_level",
    "rank_deficient",
    "non_integer",
    "negative",
    "nan",
    "empty_sample",
    "factor_not_in_design",
    "reduced_not_nested",
    "reduced_not_smaller",
    "lrt_without_reduced",
    "reduced_with_wald",
    pytest.param("duplicate_names", marks=pytest.mark.filterwarnings("ignore:Variable names are not unique")),
    "duplicate_contrast",
    "missing_layer",
    "bad_inference",
    "bad_test",
    "shrink_non_reference",
    "key_count",
    "lrt_two_contrasts",
    "continuous_contrast",
    "bad_alpha",
    "local_with_pydeseq2",
    "shrink_with_lrt",
    "string_contrast",
    "device_with_pydeseq2",
    "device_tpu",
    "numeric_contrast_length",
    "list_contrast_unknown",
    "numeric_levels_continuous",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_leaves_adata_unchanged(adata, unchanged, kind):
    kwargs, err, match = _bad(kind, adata)
    check = unchanged(adata)
    with pytest.raises(err, match=match):
        gdx.tl.deseq2(adata, **kwargs)
    check()


def test_backed_adata_refused(adata, tmp_path):
    path = tmp_path / "x.h5ad"
    adata.X = adata.layers["counts"].astype(np.float32)
    adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    try:
        with pytest.raises(ValueError, match="backed"):
            gdx.tl.deseq2(backed, design="~condition", layer=None)
    finally:
        backed.file.close()


def test_batched_agrees_with_pydeseq2(three_groups):
    kwargs = {"contrast": ["condition", "C", "A"], "n_cpus": 1}
    gdx.tl.deseq2(three_groups, design="~batch + condition", key_added="b", **kwargs)
    gdx.tl.deseq2(three_groups, design="~batch + condition", key_added="p", inference="pydeseq2", **kwargs)
    b, p = three_groups.varm["b"], three_groups.varm["p"]
    ok = np.isfinite(b["log2FoldChange"]) & np.isfinite(p["log2FoldChange"])
    assert np.corrcoef(b["log2FoldChange"][ok], p["log2FoldChange"][ok])[0, 1] > 0.999
    assert ((b["padj"] < 0.05) == (p["padj"] < 0.05)).mean() > 0.98
    np.testing.assert_allclose(b["baseMean"], p["baseMean"], rtol=1e-8)
    assert three_groups.uns["b"]["inference"] == "batched"
    assert three_groups.uns["p"]["inference"] == "pydeseq2"


def test_torch_device_matches_numpy(three_groups):
    pytest.importorskip("torch")
    kw = {"contrast": ["condition", "C", "A"]}
    gdx.tl.deseq2(three_groups, design="~condition", key_added="np", **kw)
    gdx.tl.deseq2(three_groups, design="~condition", key_added="torch", device="torch", **kw)
    assert three_groups.uns["torch"]["params"]["device"] == "torch"
    a, b = three_groups.varm["np"], three_groups.varm["torch"]
    np.testing.assert_allclose(a["log2FoldChange"], b["log2FoldChange"], rtol=1e-6, atol=1e-8, equal_nan=True)
    np.testing.assert_allclose(a["pvalue"], b["pvalue"], rtol=1e-6, atol=1e-12, equal_nan=True)
    assert (a["na_reason"] == b["na_reason"]).all()


def test_inference_instance_goes_to_pydeseq2(adata):
    from pydeseq2.default_inference import DefaultInference

    adata = adata[:, :60].copy()
    inference = DefaultInference(n_cpus=1)
    gdx.tl.deseq2(adata, design="~condition", inference=inference, n_cpus=2, key_added="inst")
    assert inference.n_cpus == 1  # our n_cpus never reconfigures the caller's object
    gdx.tl.deseq2(adata, design="~condition", **PYDESEQ2, key_added="str")
    assert adata.uns["inst"]["inference"] == "DefaultInference"
    pd.testing.assert_frame_equal(adata.varm["inst"], adata.varm["str"])


def test_batched_inference_instance_in_pydeseq2(three_groups):
    from gendex.tl import BatchedInference

    kw = {"contrast": ["condition", "C", "A"]}
    gdx.tl.deseq2(three_groups, design="~condition", inference=BatchedInference(), key_added="inst", **kw)
    gdx.tl.deseq2(three_groups, design="~condition", key_added="pyd", **kw)
    assert three_groups.uns["inst"]["inference"] == "BatchedInference"
    a, b = three_groups.varm["inst"], three_groups.varm["pyd"]
    ok = np.isfinite(a["log2FoldChange"]) & np.isfinite(b["log2FoldChange"])
    assert np.corrcoef(a["log2FoldChange"][ok], b["log2FoldChange"][ok])[0, 1] > 0.999
    assert ((a["padj"] < 0.05) == (b["padj"] < 0.05)).mean() > 0.98


@pytest.mark.parametrize("inference", ["batched", pytest.param("pydeseq2", marks=pytest.mark.slow)])
def test_lrt(three_groups, tmp_path, inference):
    kw = {"inference": inference, "n_cpus": 1}
    gdx.tl.deseq2(three_groups, design="~batch + condition", test="lrt", reduced="~batch", **kw)
    gdx.tl.deseq2(three_groups, design="~batch + condition", contrast=["condition", "C", "A"], key_added="wald", **kw)
    lrt, wald = three_groups.varm["deseq2_lrt"], three_groups.varm["wald"]
    assert list(lrt.columns) == [*RESULT_COLUMNS, *DISPERSION_COLUMNS]
    # reported LFC = last coefficient (C vs A), as R; the statistic is the LRT's. (R's Wald contrast, unlike the
    # coefficient, is 0 for genes with zero counts in both groups: leave those out.)
    both = pd.DataFrame(three_groups.layers["counts"]).groupby(three_groups.obs["condition"].to_numpy()).sum()
    nz = ((both.loc["A"] > 0) | (both.loc["C"] > 0)).to_numpy()
    np.testing.assert_allclose(lrt["log2FoldChange"][nz], wald["log2FoldChange"][nz], rtol=1e-10, equal_nan=True)
    ok = np.isfinite(lrt["stat"])
    assert (lrt["stat"][ok] > -1e-6).all()
    assert not np.allclose(lrt["pvalue"][ok], wald["pvalue"][ok])
    # true DE genes (any of B, C vs A) rank higher under the LRT
    truth = three_groups.var["is_de"].to_numpy()
    assert lrt["stat"][ok & truth].median() > 5 * lrt["stat"][ok & ~truth].median()
    uns = three_groups.uns["deseq2_lrt"]
    assert uns["test"] == "lrt" and uns["reduced"] == "~batch" and uns["lrt_df"] == 2
    assert list(uns["contrast"]) == ["condition", "C", "A"]
    assert set(lrt["na_reason"]) <= set(NA_REASONS) and (lrt["na_reason"] == "all_zero").sum() >= 1
    # a given contrast only changes the reported LFC
    gdx.tl.deseq2(
        three_groups,
        design="~batch + condition",
        test="lrt",
        reduced="~batch",
        contrast=["condition", "B", "A"],
        key_added="lrt_b",
        **kw,
    )
    other = three_groups.varm["lrt_b"]
    np.testing.assert_allclose(other["pvalue"], lrt["pvalue"], equal_nan=True)
    assert not np.allclose(other["log2FoldChange"][ok], lrt["log2FoldChange"][ok])
    back = _roundtrip(three_groups, tmp_path)
    pd.testing.assert_frame_equal(back.varm["deseq2_lrt"], lrt, check_dtype=False)
    assert back.uns["deseq2_lrt"]["lrt_df"] == 2


def test_lrt_batched_matches_pydeseq2(three_groups):
    gdx.tl.deseq2(three_groups, design="~condition", test="lrt", reduced="~1", key_added="b")
    gdx.tl.deseq2(three_groups, design="~condition", test="lrt", reduced="~1", key_added="p", **PYDESEQ2)
    b, p = three_groups.varm["b"], three_groups.varm["p"]
    ok = np.isfinite(b["stat"]) & np.isfinite(p["stat"])
    assert np.corrcoef(b["stat"][ok], p["stat"][ok])[0, 1] > 0.999
    assert ((b["padj"] < 0.05) == (p["padj"] < 0.05)).mean() > 0.98


@pytest.mark.parametrize("inference", ["batched", pytest.param("pydeseq2", marks=pytest.mark.slow)])
def test_shrink_apeglm(adata, tmp_path, inference):
    kw = {"inference": inference, "n_cpus": 1}
    gdx.tl.deseq2(adata, design="~condition", contrast=["condition", "B", "A"], shrink="apeglm", **kw)
    table = adata.varm["deseq2"]
    assert {"log2FoldChange_unshrunk", "lfcSE_unshrunk"} <= set(table.columns)
    ok = np.isfinite(table["log2FoldChange"])
    # shrinkage pulls towards zero and keeps the sign
    assert (np.abs(table["log2FoldChange"][ok]) <= np.abs(table["log2FoldChange_unshrunk"][ok]) + 1e-6).mean() > 0.95
    assert (np.sign(table["log2FoldChange"][ok]) == np.sign(table["log2FoldChange_unshrunk"][ok])).mean() > 0.95
    unshrunk = gdx.tl.deseq2(adata, design="~condition", contrast=["condition", "B", "A"], copy=True, **kw)
    ref = unshrunk.varm["deseq2"]
    np.testing.assert_allclose(table["log2FoldChange_unshrunk"], ref["log2FoldChange"], equal_nan=True)
    np.testing.assert_allclose(table["pvalue"], ref["pvalue"], equal_nan=True)
    assert adata.uns["deseq2"]["shrink_coefficient"] == "condition[T.B]"
    back = _roundtrip(adata, tmp_path)
    pd.testing.assert_frame_equal(back.varm["deseq2"], table, check_dtype=False)


# ---------------------------------------------------------------------------------------------------------------
# GSE60450 parity with R DESeq2 1.38 (slow)

CONTRASTS = {
    "celltype_luminal_vs_basal": ["celltype", "luminal", "basal"],
    "status_lactate_vs_virgin": ["status", "lactate", "virgin"],
    "status_pregnant_vs_virgin": ["status", "pregnant", "virgin"],
}


def _gse_filtered(shared_data_dir):
    adata = gdx.datasets.gse60450(shared_data_dir / "data" / "gse60450")
    gdx.pp.filter_genes(adata, min_total_count=10)
    return adata


def _run_gse(shared_data_dir, **kwargs):
    adata = _gse_filtered(shared_data_dir)
    start = time.perf_counter()
    gdx.tl.deseq2(
        adata,
        design="~celltype + status",
        contrast=list(CONTRASTS.values()),
        key_added=list(CONTRASTS),
        **kwargs,
    )
    return adata, time.perf_counter() - start


def _parity(ours: pd.DataFrame, ref: pd.DataFrame, alpha=0.05) -> dict:
    ref = ref.reindex(ours.index)
    lfc_ok = np.isfinite(ours["log2FoldChange"]) & np.isfinite(ref["log2FoldChange"])
    call_ours = (ours["padj"] < alpha).to_numpy()
    call_ref = (ref["padj"] < alpha).to_numpy()
    return {
        "pearson": float(np.corrcoef(ours["log2FoldChange"][lfc_ok], ref["log2FoldChange"][lfc_ok])[0, 1]),
        "within_0.01": float((np.abs(ours["log2FoldChange"] - ref["log2FoldChange"])[lfc_ok] < 0.01).mean()),
        "call_agreement": float((call_ours == call_ref).mean()),
        "na_agreement": float((ours["padj"].isna().to_numpy() == ref["padj"].isna().to_numpy()).mean()),
        "n_sig": int(call_ours.sum()),
        "n_sig_ref": int(call_ref.sum()),
        "n_na": int(ours["padj"].isna().sum()),
        "n_na_ref": int(ref["padj"].isna().sum()),
    }


def _read_ref(reference_dir, name):
    return pd.read_csv(reference_dir / f"deseq2_design_{name}.csv", dtype={"gene": str}).set_index("gene")


# R's results() ran with its default alpha = 0.1 for the reference tables (see the reference scripts), so the
# parity runs use alpha=0.1; calls are compared at padj < 0.05.
R_ALPHA = 0.1


@pytest.fixture(scope="session")
def gse_pydeseq2(shared_data_dir):
    """`tl.deseq2(inference="pydeseq2")` on GSE60450: the three Wald contrasts in one call, then the LRT.

    PyDESeq2's fit takes about a minute here, so the LRT call reuses the fit of the first call (both calls
    otherwise run end to end).
    """
    import gendex.tl._pydeseq2 as module

    cache = {}
    original = module._fit_pydeseq2

    def fit_once(req):
        if "dds" not in cache:
            cache["dds"] = original(req)
        return cache["dds"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "_fit_pydeseq2", fit_once)
        adata, seconds = _run_gse(shared_data_dir, inference="pydeseq2", alpha=R_ALPHA)
        start = time.perf_counter()
        gdx.tl.deseq2(
            adata, design="~celltype + status", test="lrt", reduced="~celltype", inference="pydeseq2", alpha=R_ALPHA
        )
        lrt_seconds = time.perf_counter() - start
    return adata, seconds, lrt_seconds


def _check_gse(adata, reference_dir, label, seconds, capsys, *, strict):
    assert adata.n_vars == 18418
    for name in CONTRASTS:
        stats = _parity(adata.varm[name], _read_ref(reference_dir, name))
        with capsys.disabled():
            print(f"\n[{label}] {name}: {stats}")
        assert stats["pearson"] >= 0.998
        assert stats["call_agreement"] >= 0.99
        assert stats["na_agreement"] >= (0.995 if strict else 0.97)
    ref_sf = pd.read_csv(reference_dir / "deseq2_design_size_factors.csv").set_index("sample")
    for key in [*CONTRASTS, "deseq2_lrt"]:
        sf = adata.uns[key]["size_factors"]
        np.testing.assert_allclose(sf, ref_sf.loc[adata.obs_names, "size_factor"], rtol=1e-8)
    lrt = adata.varm["deseq2_lrt"]
    stats = _parity(lrt, _read_ref(reference_dir, "LRT_status"))
    with capsys.disabled():
        print(f"[{label}] LRT status: {stats} (R: 7207 padj<0.05, 358 NA); Wald fit + 3 contrasts {seconds:.1f} s")
    assert stats["call_agreement"] >= 0.99
    if strict:  # the batched engine follows R's algorithms, independent filtering included
        assert abs(stats["n_sig"] - 7207) <= 0.002 * 7207
        assert abs(stats["n_na"] - 358) <= 5
    else:  # PyDESeq2's dispersions and its own independent filtering (measured: 7,337 and 715)
        assert abs(stats["n_sig"] - 7207) <= 0.03 * 7207
    assert adata.uns["deseq2_lrt"]["lrt_df"] == 2


@pytest.mark.slow
def test_gse60450_pydeseq2_parity(gse_pydeseq2, reference_dir, capsys):
    adata, seconds, lrt_seconds = gse_pydeseq2
    _check_gse(adata, reference_dir, "pydeseq2", seconds, capsys, strict=False)
    with capsys.disabled():
        print(f"[pydeseq2] LRT on the shared fit: {lrt_seconds:.1f} s")


@pytest.mark.slow
def test_gse60450_batched_parity(shared_data_dir, reference_dir, capsys):
    adata, seconds = _run_gse(shared_data_dir, alpha=R_ALPHA)
    assert adata.uns["celltype_luminal_vs_basal"]["inference"] == "batched"
    start = time.perf_counter()
    gdx.tl.deseq2(adata, design="~celltype + status", test="lrt", reduced="~celltype", alpha=R_ALPHA)
    lrt_seconds = time.perf_counter() - start
    _check_gse(adata, reference_dir, "batched", seconds, capsys, strict=True)
    with capsys.disabled():
        print(f"[batched] LRT (own fit): {lrt_seconds:.1f} s")
    disp = pd.read_csv(reference_dir / "deseq2_design_dispersions.csv", dtype={"gene": str}).set_index("gene")
    ours = adata.varm["deseq2_lrt"]["dispersions"]
    assert ours.corr(disp.loc[adata.var_names, "dispersion"], method="spearman") >= 0.999


def test_stats_batched_inference_is_a_deprecated_alias():
    from gendex.tl import BatchedInference

    with pytest.warns(FutureWarning, match="gendex.tl.BatchedInference"):
        old = gdx.stats.BatchedInference
    assert old is BatchedInference


def test_contrast_forms_through_tl(three_groups):
    """Every R contrast form through tl.deseq2 gives the same table as the equivalent factor contrast."""
    ad3 = three_groups.copy()
    gdx.tl.deseq2(ad3, design="~condition", contrast=["condition", "C", "B"], key_added="factor")
    ref = ad3.varm["factor"]
    cols = list(gdx.get.design_matrix(ad3, "~condition").columns)
    assert cols == ["Intercept", "condition[T.B]", "condition[T.C]"]
    gdx.tl.deseq2(ad3, design="~condition", contrast=[0, -1, 1], key_added="numeric")
    gdx.tl.deseq2(ad3, design="~condition", contrast=[["condition[T.C]"], ["condition[T.B]"]], key_added="listed")
    gdx.tl.deseq2(ad3, design="~0 + condition", contrast=["condition", "C", "B"], key_added="cellmeans")
    for key in ("numeric", "listed", "cellmeans"):
        got = ad3.varm[key]
        # the same fit gives the same numbers; the cell-means parametrisation is another IRLS path, which stops
        # within its 1e-8 relative deviance tolerance
        tol = 1e-4 if key == "cellmeans" else 1e-10
        np.testing.assert_allclose(got["log2FoldChange"], ref["log2FoldChange"], rtol=0, atol=tol)
        np.testing.assert_array_equal(got["padj"].isna(), ref["padj"].isna())
    assert ad3.uns["listed"]["contrast"] == ["condition[T.C]", "condition[T.B]"]
    gdx.tl.deseq2(ad3, design="~condition", contrast="condition[T.C]", key_added="name")
    gdx.tl.deseq2(ad3, design="~condition", contrast=["condition", "C", "A"], key_added="c_vs_a")
    # R's name= has no zero-count rule: genes with zero counts in every A and C sample keep their fitted LFC
    cond = ad3.obs["condition"].astype(str).to_numpy()
    zero = ad3.layers["counts"][np.isin(cond, ["A", "C"])].sum(0) == 0
    zero &= ad3.layers["counts"].sum(0) > 0
    assert zero.any()
    by_name, by_factor = ad3.varm["name"]["log2FoldChange"], ad3.varm["c_vs_a"]["log2FoldChange"]
    np.testing.assert_allclose(by_name[~zero], by_factor[~zero], atol=1e-12)
    assert np.all(by_factor[zero] == 0) and np.all(by_name[zero] != 0)
    # several contrasts of different forms in one call reuse one fit and get distinct default keys
    gdx.tl.deseq2(ad3, design="~condition", contrast=["condition[T.B]", ["condition", "C", "A"]])
    assert {"deseq2_condition_T.B", "deseq2_C_vs_A"} <= set(ad3.varm)


def test_numeric_levels_and_quoted_factor_names(three_groups):
    ad3 = three_groups.copy()
    ad3.obs["batch"] = pd.Categorical(np.tile([1, 2], ad3.n_obs // 2 + 1)[: ad3.n_obs])
    gdx.tl.deseq2(ad3, design="~batch + condition", contrast=["batch", 2, 1], key_added="batch")
    assert ad3.uns["batch"]["contrast"] == ["batch", "2", "1"]
    ad3.obs["cell type"] = ad3.obs["condition"].astype(str)
    gdx.tl.deseq2(ad3, design="~Q('cell type')", contrast=["cell type", "C", "A"], key_added="quoted")
    gdx.tl.deseq2(ad3, design="~condition", contrast=["condition", "C", "A"], key_added="plain")
    np.testing.assert_allclose(ad3.varm["quoted"]["log2FoldChange"], ad3.varm["plain"]["log2FoldChange"], atol=1e-10)


def test_two_fits_with_different_designs_keep_their_own_outputs(three_groups):
    gdx.tl.deseq2(three_groups, design="~condition", contrast=["condition", "B", "A"], key_added="one")
    gdx.tl.deseq2(three_groups, design="~batch + condition", contrast=["condition", "B", "A"], key_added="two")
    single = gdx.tl.deseq2(three_groups, design="~condition", contrast=["condition", "B", "A"], copy=True)
    # the second fit left the first one's dispersions and size factors as they were
    pd.testing.assert_frame_equal(three_groups.varm["one"], single.varm["deseq2"])
    np.testing.assert_array_equal(three_groups.uns["one"]["size_factors"], single.uns["deseq2"]["size_factors"])
    one, two = three_groups.varm["one"]["dispersions"], three_groups.varm["two"]["dispersions"]
    assert not np.allclose(one.dropna(), two.dropna())  # the designs differ, so do the dispersions
    assert (
        three_groups.uns["one"]["design"] == "~condition" and three_groups.uns["two"]["design"] == "~batch + condition"
    )


def test_positional_design_still_works_with_a_warning(three_groups):
    with pytest.warns(FutureWarning, match="design="):
        old = gdx.tl.deseq2(three_groups, "~condition", contrast=["condition", "B", "A"], copy=True)
    new = gdx.tl.deseq2(three_groups, design="~condition", contrast=["condition", "B", "A"], copy=True)
    pd.testing.assert_frame_equal(old.varm["deseq2"], new.varm["deseq2"])
    with pytest.raises(TypeError, match="twice"):
        gdx.tl.deseq2(three_groups, "~condition", design="~condition")
    with pytest.raises(TypeError, match="only positional"):
        gdx.tl.deseq2(three_groups, "~condition", "~batch")
