from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gendex as gdx
from gendex._utils import store_de_results

LFC1 = [2.0, -1.0, 0.5, 0.1, 1.5, np.nan, 0.3, -2.0, 0.8, -0.4]
PADJ1 = [0.001, 0.01, 0.3, 0.9, 0.01, np.nan, np.nan, 0.0, 0.04, 0.6]
LFC2 = [1.5, -0.2, 0.7, 0.0, np.nan, 0.4, 0.2, 1.0, 0.6, -0.3]
PADJ2 = [0.01, 0.5, 0.02, 0.8, 0.9, 0.3, 0.5, 0.001, 0.03, 0.7]


def _table(lfc, padj):
    lfc = np.asarray(lfc, dtype=float)
    return pd.DataFrame({"baseMean": 50.0, "log2FoldChange": lfc, "stat": lfc, "pvalue": padj, "padj": padj})


@pytest.fixture
def two_results():
    adata = ad.AnnData(np.ones((4, len(LFC1))), var=pd.DataFrame(index=[f"g{i}" for i in range(len(LFC1))]))
    t1, t2 = _table(LFC1, PADJ1), _table(LFC2, PADJ2)
    t1.index = t2.index = adata.var_names
    store_de_results(adata, "deseq2", t1, method="deseq2", params={}, contrast=["condition", "B", "A"])
    store_de_results(adata, "nbvae_de", t2, method="nbvae", params={}, contrast=["condition", "B", "A"])
    return adata


def test_compare_de_summary_and_table(two_results):
    adata = two_results
    assert gdx.tl.compare_de(adata, "deseq2", "nbvae_de") is None
    rec = adata.uns["compare_deseq2_vs_nbvae_de"]
    s = rec["summary"]
    both = [0, 1, 2, 3, 7, 8, 9]
    x, y = np.asarray(LFC1)[both], np.asarray(LFC2)[both]
    assert s["pearson"] == pytest.approx(stats.pearsonr(x, y)[0])
    assert s["spearman"] == pytest.approx(stats.spearmanr(x, y)[0])
    np.testing.assert_allclose([s["slope"], s["intercept"]], np.polyfit(x, y, 1))
    assert (s["n_both_finite"], s["n_finite_only1"], s["n_finite_only2"]) == (7, 1, 2)
    assert (s["n_sig_both"], s["n_sig_only1"], s["n_sig_only2"], s["n_sig_neither"]) == (3, 1, 1, 2)
    assert s["agreement"] == pytest.approx(5 / 7)
    table = rec["table"]
    assert list(table.index) == list(adata.var_names)
    assert list(table.columns) == ["lfc1", "lfc2", "padj1", "padj2", "finite1", "finite2", "sig1", "sig2", "category"]
    assert table["category"].tolist() == [
        "both", "only1", "only2", "neither", "untested", "untested", "untested", "both", "both", "neither"
    ]  # fmt: skip
    expected = {"key1": "deseq2", "key2": "nbvae_de", "alpha": 0.05, "method1": "deseq2", "method2": "nbvae"}
    assert rec["params"] == expected


def test_compare_de_alpha_and_key_added(two_results):
    gdx.tl.compare_de(two_results, "nbvae_de", "deseq2", alpha=0.02, key_added="cmp")
    s = two_results.uns["cmp"]["summary"]
    # roles swapped: finite only in key1 is now the NB-VAE's
    assert (s["n_finite_only1"], s["n_finite_only2"]) == (2, 1)
    assert (s["n_sig_both"], s["n_sig_only1"], s["n_sig_only2"], s["n_sig_neither"]) == (2, 0, 1, 4)
    assert "compare_nbvae_de_vs_deseq2" not in two_results.uns


def test_compare_de_round_trips_h5ad(two_results, tmp_path):
    gdx.tl.compare_de(two_results, "deseq2", "nbvae_de")
    path = tmp_path / "cmp.h5ad"
    two_results.write_h5ad(path)
    back = ad.read_h5ad(path)
    before, after = two_results.uns["compare_deseq2_vs_nbvae_de"], back.uns["compare_deseq2_vs_nbvae_de"]
    pd.testing.assert_frame_equal(before["table"], after["table"])
    assert before["params"] == after["params"]
    assert set(before["summary"]) == set(after["summary"])
    for k, v in before["summary"].items():
        np.testing.assert_equal(after["summary"][k], v)
    # the plots read the round-tripped record
    ax = gdx.pl.lfc_scatter(back, "compare_deseq2_vs_nbvae_de")
    assert sum(len(c.get_offsets()) for c in ax.collections) == 8  # genes with both log2FC finite


def test_compare_de_on_simulation_recovers_shrinkage():
    adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300, random_state=3)
    truth = adata.var["true_log2fc"].to_numpy()
    rng = np.random.default_rng(0)
    padj = np.where(adata.var["is_de"], 1e-6, 0.5)
    for key, scale in (("a", 1.0), ("b", 0.5)):
        df = _table(scale * truth + rng.normal(0, 0.01, truth.size), padj)
        df.index = adata.var_names
        store_de_results(adata, key, df, method=key, params={})
    gdx.tl.compare_de(adata, "a", "b")
    s = adata.uns["compare_a_vs_b"]["summary"]
    assert s["slope"] == pytest.approx(0.5, abs=0.02)
    assert s["pearson"] > 0.99
    assert s["agreement"] == 1.0 and s["n_sig_both"] == adata.var["is_de"].sum()


def test_compare_de_bad_input_leaves_adata_unchanged(two_results, unchanged):
    check = unchanged(two_results)
    with pytest.raises(KeyError, match=r"`key1`.*'edger'.*available: \['deseq2', 'nbvae_de'\]"):
        gdx.tl.compare_de(two_results, "edger", "nbvae_de")
    with pytest.raises(KeyError, match=r"`key2`.*available: \['deseq2', 'nbvae_de'\]"):
        gdx.tl.compare_de(two_results, "deseq2", "limma")
    with pytest.raises(ValueError, match="both 'deseq2'"):
        gdx.tl.compare_de(two_results, "deseq2", "deseq2")
    with pytest.raises(ValueError, match="alpha"):
        gdx.tl.compare_de(two_results, "deseq2", "nbvae_de", alpha=2.0)
    two_results.varm["bad"] = pd.DataFrame({"x": np.zeros(two_results.n_vars)}, index=two_results.var_names)
    with pytest.raises(KeyError, match="lacks the columns"):
        gdx.tl.compare_de(two_results, "deseq2", "bad")
    del two_results.varm["bad"]
    check()


def test_compare_de_r_deseq2_vs_r_limma_on_gse60450(gse60450, reference_dir):
    """R's DESeq2 (18,418 genes) against R's limma-voom (14,453 genes, a subset) for luminal vs basal."""
    read = {"dtype": {"gene": str}, "index_col": "gene"}
    d = pd.read_csv(reference_dir / "deseq2_design_celltype_luminal_vs_basal.csv", **read)
    lim = pd.read_csv(reference_dir / "limma_voom_cpmrule_TMM_luminal_vs_basal_topTable.csv", **read)
    lim = lim.rename(columns={"logFC": "log2FoldChange", "t": "stat", "P.Value": "pvalue", "adj.P.Val": "padj"})
    lim["baseMean"] = lim["AveExpr"]
    store_de_results(gse60450, "deseq2", d, method="deseq2", params={})
    store_de_results(gse60450, "limma_voom", lim, method="limma_voom", params={})
    gdx.tl.compare_de(gse60450, "deseq2", "limma_voom")
    s = gse60450.uns["compare_deseq2_vs_limma_voom"]["summary"]
    assert (s["n_both_finite"], s["n_finite_only1"], s["n_finite_only2"]) == (14_453, 18_418 - 14_453, 0)
    assert s["n_sig_both"] + s["n_sig_only2"] == (lim["padj"] < 0.05).sum() == 8_640
    assert s["n_sig_both"] + s["n_sig_only1"] == (d.loc[lim.index, "padj"] < 0.05).sum()
    assert s["pearson"] > 0.99 and s["spearman"] > 0.99
    assert 0.9 < s["slope"] < 1.05
    na = gdx.pl.na_genes(gse60450, "compare_deseq2_vs_limma_voom")
    assert na.texts[0].get_text().startswith("no NA genes: DESeq2 tested all 14,453 genes")  # words, not one box


def test_compare_de_nullable_columns_and_too_few_genes(two_results):
    t2 = two_results.varm["nbvae_de"].copy()
    t2["padj"] = t2["padj"].astype("Float64")
    t2.loc[t2.index[:8], "padj"] = pd.NA
    two_results.varm["nbvae_de"] = t2
    with pytest.warns(UserWarning, match="only 2 genes"):
        gdx.tl.compare_de(two_results, "deseq2", "nbvae_de")
    s = two_results.uns["compare_deseq2_vs_nbvae_de"]["summary"]
    assert s["n_both_finite"] == 2 and np.isnan(s["pearson"]) and np.isnan(s["slope"])
