import numpy as np
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


def test_filter_nothing_left_raises(adata, unchanged):
    check = unchanged(adata)
    with pytest.raises(ValueError, match="no gene"):
        gdx.pp.filter_genes(adata, min_total_count=10**12)
    check()
