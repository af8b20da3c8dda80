import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gendex as gdx


@pytest.fixture
def two_results(adata, de_factory):
    net = de_factory(adata, key="de1", seed=0)
    de_factory(adata, key="de2", seed=5)
    gdx.tl.enrich(adata, key="de1", net=net)
    # the second result drops the smallest sets (tmin) so that some sets are only in the first
    gdx.tl.enrich(adata, key="de2", net=net, tmin=7)
    return adata


def test_compare_enrichment_table_summary_and_h5ad(two_results, tmp_path):
    adata = two_results
    gdx.tl.compare_enrichment(adata, "enrich_ulm_de1", "enrich_ulm_de2")
    rec = adata.uns["compare_enrich_ulm_de1_vs_enrich_ulm_de2"]
    table, summary = rec["table"], rec["summary"]
    r1 = adata.uns["enrich_ulm_de1"]["results"].set_index("source")
    r2 = adata.uns["enrich_ulm_de2"]["results"].set_index("source")
    assert set(table.index) == set(r1.index) | set(r2.index)
    np.testing.assert_allclose(table.loc[r1.index, "score1"], r1["score"])
    np.testing.assert_allclose(table.loc[r2.index, "padj2"], r2["padj"])
    only1 = sorted(set(r1.index) - set(r2.index))
    assert only1 and (table.loc[only1, "category"] == "untested").all() and table.loc[only1, "score2"].isna().all()
    shared = sorted(set(r1.index) & set(r2.index))
    assert summary["n_shared"] == len(shared) and summary["n_only_in1"] == len(only1) and summary["n_only_in2"] == 0
    rho, _ = stats.spearmanr(r1.loc[shared, "score"], r2.loc[shared, "score"])
    assert summary["spearman"] == pytest.approx(rho)
    # ranks: 1 = highest score within each result
    assert table.loc["UP", "rank1"] == 1 and table.loc["DOWN", "rank1"] == len(r1)
    assert table.loc["UP", "category"] == "both" and table.loc["UP", "agree"] and table.loc["DOWN", "agree"]
    assert summary["n_sig_both"] >= 2 and summary["n_agree"] >= 2
    same = np.sign(r1.loc[shared, "score"]) == np.sign(r2.loc[shared, "score"])
    assert summary["sign_agreement"] == pytest.approx(same.mean())
    cats = table["category"].value_counts()
    assert cats.get("both", 0) == summary["n_sig_both"] and cats.get("neither", 0) == summary["n_sig_neither"]
    path = tmp_path / "c.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path).uns["compare_enrich_ulm_de1_vs_enrich_ulm_de2"]
    pd.testing.assert_frame_equal(back["table"], table, check_dtype=False)
    assert back["summary"]["spearman"] == pytest.approx(summary["spearman"])


def test_compare_ora_results_label_directions(adata, de_factory):
    net = de_factory(adata, key="de1", seed=0)
    de_factory(adata, key="de2", seed=5)
    for key in ("de1", "de2"):
        gdx.tl.enrich(adata, key=key, net=net, method="ora", lfc_threshold=0.5)
    gdx.tl.compare_enrichment(adata, "enrich_ora_de1", "enrich_ora_de2", key_added="cmp")
    table = adata.uns["cmp"]["table"]
    assert "UP (up)" in table.index and "DOWN (down)" in table.index
    assert table.loc["UP (up)", "agree"]


def test_compare_enrichment_errors(two_results, unchanged):
    adata = two_results
    check = unchanged(adata)
    with pytest.raises(KeyError, match="no enrichment result"):
        gdx.tl.compare_enrichment(adata, "enrich_ulm_de1", "nope")
    with pytest.raises(TypeError, match="not an enrichment result"):
        gdx.tl.compare_enrichment(adata, "enrich_ulm_de1", "de1")
    with pytest.raises(ValueError, match="alpha"):
        gdx.tl.compare_enrichment(adata, "enrich_ulm_de1", "enrich_ulm_de2", alpha=2)
    check()


def test_compare_enrichment_copy(two_results):
    out = gdx.tl.compare_enrichment(two_results, "enrich_ulm_de1", "enrich_ulm_de2", key_added="c", copy=True)
    assert "c" in out.uns and "c" not in two_results.uns


def test_spearman_is_nan_with_fewer_than_three_shared_sets(adata, de_factory):
    net = de_factory(adata, key="de1", seed=0)
    gdx.tl.enrich(adata, key="de1", net=net, key_added="all")
    gdx.tl.enrich(adata, key="de1", net=net[net["source"].isin(["UP", "DOWN"])], key_added="two")
    gdx.tl.compare_enrichment(adata, "all", "two", key_added="c")
    summary = adata.uns["c"]["summary"]
    assert summary["n_shared"] == 2 and np.isnan(summary["spearman"]) and summary["sign_agreement"] == 1.0
