import anndata as ad
import numpy as np
import pandas as pd
import pytest

import gendex as gdx


def test_filter_by_expr_matches_edger_on_gse60450(gse60450):
    gdx.pp.filter_by_expr(gse60450, group="celltype")
    assert gse60450.n_vars == 14453
    rec = gse60450.uns["filter_by_expr"]
    assert rec["n_genes_kept"] == 14453
    assert np.isclose(rec["cpm_cutoff"], 0.45218334, rtol=1e-6)


def test_filter_genes_prefilter_gse60450(gse60450):
    gdx.pp.filter_genes(gse60450, min_total_count=10)
    assert gse60450.n_vars == 18418


def test_filter_genes_flag_only_and_copy(adata):
    out = gdx.pp.filter_genes(adata, min_total_count=50, copy=True)
    assert out.n_vars < adata.n_vars == 200
    gdx.pp.filter_genes(adata, min_total_count=50, subset=False)
    assert adata.n_vars == 200
    assert adata.var["pass_filter_genes"].sum() == out.n_vars


def test_filter_by_expr_unknown_group(adata, unchanged):
    check = unchanged(adata)
    with pytest.raises(KeyError, match="nope"):
        gdx.pp.filter_by_expr(adata, group="nope")
    check()


def test_filter_missing_flags_and_subsets():
    adata = gdx.datasets.simulate_shift(n_samples=20, n_genes=30, seed=1)
    adata.X[:18, 5] = np.nan
    gdx.pp.filter_missing(adata, max_missing=0.8)
    assert adata.n_vars == 29
    assert "gene_0005" not in adata.var_names
    assert adata.var["frac_missing"].max() <= 0.8
    # the summary keeps a row for every gene, the dropped one too
    summary = adata.uns["filter_missing"]["summary"]
    assert summary.shape == (30, 3) and summary.index[5] == "gene_0005"
    assert summary.loc["gene_0005"].tolist() == [18, 0.9, False]
    assert summary["pass_filter_missing"].sum() == 29


def test_filter_missing_summary_survives_h5ad(tmp_path):
    adata = gdx.datasets.simulate_shift(n_samples=10, n_genes=20, missing_p=0.3, seed=2)
    copy = gdx.pp.filter_missing(adata, max_missing=0.3, copy=True)
    assert "filter_missing" not in adata.uns
    copy.write_h5ad(tmp_path / "f.h5ad")
    back = ad.read_h5ad(tmp_path / "f.h5ad").uns["filter_missing"]["summary"]
    pd.testing.assert_frame_equal(back, copy.uns["filter_missing"]["summary"], check_index_type=False)
    assert len(back) == 20 > copy.n_vars


def test_filter_nothing_left_raises(adata, unchanged):
    check = unchanged(adata)
    with pytest.raises(ValueError, match="no gene"):
        gdx.pp.filter_genes(adata, min_total_count=10**12)
    check()


def test_filters_write_under_key_added():
    adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=100, random_state=0)
    out = gdx.pp.filter_genes(adata, min_total_count=10, subset=False, key_added="strict", copy=True)
    assert "pass_strict" in out.var and "strict" in out.uns and "pass_filter_genes" not in out.var
    default = gdx.pp.filter_genes(adata, min_total_count=10, subset=False, copy=True)
    np.testing.assert_array_equal(out.var["pass_strict"], default.var["pass_filter_genes"])
    shift = gdx.datasets.simulate_shift(n_samples=10, n_genes=20, missing_p=0.3, seed=2)
    gdx.pp.filter_missing(shift, max_missing=0.5, key_added="miss")
    assert "miss" in shift.uns and "pass_miss" in shift.uns["miss"]["summary"]
    with pytest.raises(ValueError, match="key_added"):
        gdx.pp.filter_genes(adata, key_added="")
