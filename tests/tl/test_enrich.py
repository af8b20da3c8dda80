import anndata as ad
import decoupler as dc
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gendex as gdx

RESULT_COLUMNS = ["source", "score", "pvalue", "padj", "n_genes", "direction"]


def roundtrip(adata, tmp_path):
    path = tmp_path / "enrich.h5ad"
    adata.write_h5ad(path)
    return ad.read_h5ad(path)


def by_source(res):
    return res.set_index("source")


@pytest.mark.parametrize("method", ["ulm", "zscore", "gsea"])
def test_scored_methods_find_planted_sets_and_survive_h5ad(de_adata, method, tmp_path):
    adata, net = de_adata
    gdx.tl.enrich(adata, key="de", net=net, method=method, times=200)
    rec = adata.uns[f"enrich_{method}_de"]
    res = rec["results"]
    assert list(res.columns[:6]) == RESULT_COLUMNS
    r = by_source(res)
    # planted sets at the extremes, tiny and absent sets dropped, NaN genes not counted
    assert r["score"].idxmax() == "UP" and r["score"].idxmin() == "DOWN"
    assert r.loc["UP", "direction"] == "up" and r.loc["DOWN", "direction"] == "down"
    assert r.loc["UP", "padj"] < 0.01 and r.loc["DOWN", "padj"] < 0.01
    assert "TINY" not in r.index and "GHOST" not in r.index
    assert r.loc["WITH_NAN", "n_genes"] == 6 and r.loc["UP", "n_genes"] == 25
    assert rec["n_universe"] == 190 and rec["n_sets_tested"] == len(res) == 8 and rec["n_sets_net"] == 10
    assert rec["contrast"] == ["condition", "B", "A"]
    assert rec["versions"]["decoupler"] == dc.__version__
    np.testing.assert_allclose(r["padj"], gdx.stats.bh_adjust(r["pvalue"].to_numpy()))
    assert (np.diff(res["pvalue"].to_numpy()) >= 0).all()  # sorted by p-value
    back = roundtrip(adata, tmp_path).uns[f"enrich_{method}_de"]
    pd.testing.assert_frame_equal(back["results"], res, check_dtype=False)
    assert back["params"] == rec["params"]


@pytest.mark.parametrize("method", ["ulm", "zscore", "gsea"])
def test_scores_and_padj_equal_decoupler_public_call(de_adata, method):
    adata, net = de_adata
    gdx.tl.enrich(adata, "de", net=net, method=method, times=100, random_state=7, tmin=5, key_added="ours")
    params = adata.uns["ours"]["params"]
    kwargs = {"times": 100, "seed": params["gsea_seed"]} if method == "gsea" else {}
    ours = by_source(adata.uns["ours"]["results"])
    mat = adata.varm["de"][["stat"]].dropna().T
    net_w = net.assign(weight=1.0)
    scores, padj = getattr(dc.mt, method)(mat, net_w, tmin=5, **kwargs)
    assert set(scores.columns) == set(ours.index)
    np.testing.assert_allclose(ours.loc[scores.columns, "score"], scores.iloc[0], rtol=1e-12, atol=1e-12)
    # decoupler computes its BH correction in float32
    np.testing.assert_allclose(ours.loc[padj.columns, "padj"], padj.iloc[0], rtol=1e-6, atol=1e-12)


def test_ulm_pvalue_is_the_t_test_of_the_score(de_adata):
    adata, net = de_adata
    gdx.tl.enrich(adata, key="de", net=net)
    res = adata.uns["enrich_ulm_de"]["results"]
    df = adata.uns["enrich_ulm_de"]["n_universe"] - 2
    np.testing.assert_allclose(res["pvalue"], 2 * stats.t.sf(np.abs(res["score"]), df), rtol=1e-10)


def test_gsea_leading_edge_matches_decoupler(de_adata):
    adata, net = de_adata
    gdx.tl.enrich(adata, key="de", net=net, method="gsea", times=50)
    res = by_source(adata.uns["enrich_gsea_de"]["results"])
    table = adata.varm["de"][["stat"]].dropna()
    for name in ("UP", "DOWN", "RANDOM_0"):
        _fig, le = dc.pl.leading_edge(table, net=net.assign(weight=1.0), stat="stat", name=name)
        ours = res.loc[name, "leading_genes"].split(";")
        assert set(ours) == set(le)
    up = res.loc["UP", "leading_genes"].split(";")
    assert np.all(np.diff(table.loc[up, "stat"].to_numpy()) <= 0)  # most extreme first


def test_gsea_random_state_changes_only_pvalues(de_adata):
    adata, net = de_adata
    gdx.tl.enrich(adata, key="de", net=net, method="gsea", times=100, random_state=1, key_added="a")
    gdx.tl.enrich(adata, key="de", net=net, method="gsea", times=100, random_state=1, key_added="b")
    gdx.tl.enrich(adata, key="de", net=net, method="gsea", times=100, random_state=2, key_added="c")
    a, b, c = (by_source(adata.uns[k]["results"]).sort_index() for k in "abc")
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["pvalue"], c["pvalue"])


def test_gsea_random_state_none_draws_fresh_seeds_and_records_them(de_adata):
    adata, net = de_adata
    state = np.random.get_state()[1].copy()
    for k in "xy":
        gdx.tl.enrich(adata, "de", net=net, method="gsea", times=20, random_state=None, key_added=k)
    seeds = [adata.uns[k]["params"]["gsea_seed"] for k in "xy"]
    assert seeds[0] != seeds[1] and all(s >= 1 for s in seeds)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the global generator is untouched


def _ora_expected(adata, net, alpha, lfc_threshold, padj_col="padj"):
    de = adata.varm["de"]
    universe = de.index[de[padj_col].notna() & de["log2FoldChange"].notna()]
    d = de.loc[universe]
    up = set(d.index[(d[padj_col] <= alpha) & (d["log2FoldChange"] >= lfc_threshold)])
    down = set(d.index[(d[padj_col] <= alpha) & (d["log2FoldChange"] <= -lfc_threshold)])
    return set(universe), up, down


def test_ora_selects_the_right_genes_and_matches_fisher_and_query_set(de_adata, tmp_path):
    adata, net = de_adata
    gdx.tl.enrich(adata, key="de", net=net, method="ora", alpha=0.05, lfc_threshold=1.0)
    rec = adata.uns["enrich_ora_de"]
    res = rec["results"]
    universe, up, down = _ora_expected(adata, net, 0.05, 1.0)
    assert rec["n_universe"] == len(universe) == 190
    assert rec["n_up"] == len(up) > 5 and rec["n_down"] == len(down) > 5
    assert set(res["direction"]) == {"up", "down"}
    pnet = net[net["target"].isin(universe)]
    sizes = pnet.groupby("source").size()
    pnet = pnet[pnet["source"].isin(sizes.index[sizes >= 5])]
    for _, row in res.iterrows():
        members = set(pnet.loc[pnet["source"] == row["source"], "target"])
        genes = up if row["direction"] == "up" else down
        overlap = members & genes
        assert row["overlap"] == len(overlap) and row["n_genes"] == len(members)
        assert set(filter(None, row["leading_genes"].split(";"))) == overlap
        k, n_in, n_sel, n_all = len(overlap), len(members), len(genes), len(universe)
        _, p_fisher = stats.fisher_exact([[k, n_in - k], [n_sel - k, n_all - n_in - n_sel + k]], alternative="greater")
        np.testing.assert_allclose(row["pvalue"], p_fisher, rtol=1e-9)
    r = res.set_index(["direction", "source"])
    assert r.loc[("up", "UP"), "padj"] < 1e-3 and r.loc[("down", "DOWN"), "padj"] < 1e-3
    assert r.loc[("up", "DOWN"), "overlap"] == 0
    # equal to decoupler's query_set used correctly: n_bg = universe size, net pruned to the universe
    for direction, genes in (("up", up), ("down", down)):
        qs = dc.mt.query_set(sorted(genes), pnet, n_bg=len(universe), tmin=5).set_index("source")
        ours = r.loc[direction]
        np.testing.assert_allclose(ours.loc[qs.index, "pvalue"], qs["pval"], rtol=1e-9)
        np.testing.assert_allclose(ours.loc[qs.index, "score"], qs["stat"], rtol=1e-9)
        np.testing.assert_allclose(ours.loc[qs.index, "padj"], qs["padj"], rtol=1e-9)
    back = roundtrip(adata, tmp_path).uns["enrich_ora_de"]["results"]
    pd.testing.assert_frame_equal(back, res, check_dtype=False)


def test_same_call_on_a_generative_result(adata, de_factory):
    # generative results carry qvalue (= padj), lfsr, prob_de, is_de beside the shared columns
    n = adata.n_vars
    rng = np.random.default_rng(1)
    qvalue = rng.uniform(0, 1, size=n)
    qvalue[:20] = 0.001
    net = de_factory(adata, key="nbvae_de", extra={"qvalue": qvalue, "prob_de": 1 - qvalue, "is_de": qvalue < 0.05})
    gdx.tl.enrich(adata, key="nbvae_de", net=net, method="ora", padj_col="qvalue", lfc_threshold=0.5)
    res = adata.uns["enrich_ora_nbvae_de"]["results"].set_index(["direction", "source"])
    lfc = adata.varm["nbvae_de"]["log2FoldChange"].to_numpy()
    expected = int(((qvalue <= 0.05) & (lfc >= 0.5))[:20].sum())
    assert expected >= 15 and res.loc[("up", "UP"), "overlap"] == expected
    assert res.loc[("up", "UP"), "padj"] < 1e-6
    assert adata.uns["enrich_ora_nbvae_de"]["params"]["padj_col"] == "qvalue"
    gdx.tl.enrich(adata, key="nbvae_de", net=net)
    assert by_source(adata.uns["enrich_ulm_nbvae_de"]["results"])["score"].idxmax() == "UP"


def test_ora_empty_list_warns_and_is_skipped(de_adata):
    adata, net = de_adata
    with pytest.warns(UserWarning) as record:
        gdx.tl.enrich(adata, key="de", net=net, method="ora", lfc_threshold=1.0, alpha=1e-300)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert "no down-regulated genes" in messages[0] and "no up-regulated genes" in messages[1]
    # both lists empty: two warnings, empty table with the full column set
    res = adata.uns["enrich_ora_de"]["results"]
    assert res.empty and {"source", "score", "overlap", "leading_genes"} <= set(res.columns)


def test_gene_symbols_give_the_same_result_as_ids(de_adata):
    adata, net = de_adata
    adata.var["symbol"] = ["Sym" + g for g in adata.var_names]
    sym_net = net.assign(target="Sym" + net["target"])
    gdx.tl.enrich(adata, key="de", net=net, key_added="ids")
    gdx.tl.enrich(adata, key="de", net=sym_net, gene_symbols="symbol", key_added="syms")
    a = adata.uns["ids"]["results"].drop(columns="source")
    b = adata.uns["syms"]["results"].drop(columns="source")
    pd.testing.assert_frame_equal(a, b)
    assert adata.uns["syms"]["params"]["gene_symbols"] == "symbol"


def test_duplicated_symbols_keep_the_highest_basemean(de_adata):
    adata, net = de_adata
    de = adata.varm["de"]
    symbols = pd.Series(adata.var_names, index=adata.var_names)
    # gene_00000 (an UP gene) and gene_00150 (null) share a symbol; the null gene has the higher baseMean
    de.loc["gene_00150", "baseMean"] = de.loc["gene_00000", "baseMean"] + 1
    symbols["gene_00150"] = "gene_00000"
    adata.var["symbol"] = symbols.to_numpy()
    adata.varm["de"] = de
    gdx.tl.enrich(adata, key="de", net=net, gene_symbols="symbol")
    rec = adata.uns["enrich_ulm_de"]
    assert rec["n_duplicated_symbols"] == 1 and rec["n_universe"] == 189
    # the UP set now holds gene_00150's null statistic under the symbol gene_00000
    gdx.tl.enrich(adata, key="de", net=net, key_added="ids")
    assert by_source(rec["results"]).loc["UP", "score"] < by_source(adata.uns["ids"]["results"]).loc["UP", "score"]


def test_net_from_gmt_path_and_weights(de_adata, tmp_path):
    adata, net = de_adata
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("".join(f"{s}\tterm {s}\t" + "\t".join(g) + "\n" for s, g in net.groupby("source")["target"]))
    gdx.tl.enrich(adata, key="de", net=str(gmt), key_added="from_path")
    gdx.tl.enrich(adata, key="de", net=net, key_added="from_df")
    a = by_source(adata.uns["from_path"]["results"]).sort_index()
    b = by_source(adata.uns["from_df"]["results"]).sort_index()
    np.testing.assert_allclose(a["score"], b["score"])
    assert adata.uns["from_path"]["params"]["net"] == str(gmt)
    # the GMT's description column reaches the results (the name a plot can show), a plain net has none
    assert (a["description"] == "term " + a.index).all() and "description" not in b.columns
    # weights are used by ulm: negating the UP set's weights flips its score
    w = net.assign(weight=np.where(net["source"] == "UP", -1.0, 1.0))
    gdx.tl.enrich(adata, key="de", net=w, key_added="weighted")
    np.testing.assert_allclose(
        by_source(adata.uns["weighted"]["results"]).loc["UP", "score"], -b.loc["UP", "score"], rtol=1e-10
    )


def test_duplicate_pairs_in_net_are_dropped(de_adata):
    adata, net = de_adata
    gdx.tl.enrich(adata, key="de", net=pd.concat([net, net.iloc[:5]]), key_added="dup")
    gdx.tl.enrich(adata, key="de", net=net, key_added="nodup")
    pd.testing.assert_frame_equal(adata.uns["dup"]["results"], adata.uns["nodup"]["results"])


def test_copy_returns_new_object(de_adata, unchanged):
    adata, net = de_adata
    check = unchanged(adata)
    out = gdx.tl.enrich(adata, key="de", net=net, copy=True)
    check()
    assert "enrich_ulm_de" in out.uns and "enrich_ulm_de" not in adata.uns


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"key": "nope"}, KeyError, "no DE result"),
        ({"method": "ora2"}, ValueError, "`method` must be one of"),
        ({"stat": "t"}, KeyError, "statistic column 't'"),
        ({"gene_symbols": "symbol"}, KeyError, "gene_symbols='symbol'"),
        ({"tmin": 0}, ValueError, "tmin"),
        ({"method": "gsea", "random_state": -1}, ValueError, "random_state"),
        ({"method": "ora", "padj_col": "qvalue"}, KeyError, "adjusted p-value column 'qvalue'"),
        ({"method": "ora", "alpha": 0}, ValueError, "alpha"),
        ({"method": "ora", "lfc_threshold": -1}, ValueError, "lfc_threshold"),
        ({"net": pd.DataFrame({"set": ["a"], "gene": ["b"]})}, KeyError, "`net` lacks"),
        ({"net": 3}, TypeError, "`net` must be"),
        ({"tmin": 500}, ValueError, "tmin=500"),
    ],
)
def test_bad_input_leaves_adata_unchanged(de_adata, unchanged, kwargs, error, match):
    adata, net = de_adata
    check = unchanged(adata)
    args = {"key": "de", "net": net, **kwargs}
    with pytest.raises(error, match=match):
        gdx.tl.enrich(adata, **args)
    check()


def test_symbol_net_on_id_data_gives_a_hint(de_adata, unchanged):
    adata, net = de_adata
    check = unchanged(adata)
    with pytest.raises(ValueError, match="pass `gene_symbols=`"):
        gdx.tl.enrich(adata, key="de", net=net.assign(target="Sym" + net["target"]))
    check()


def test_non_numeric_stat_is_rejected(de_adata):
    adata, net = de_adata
    de = adata.varm["de"]
    de["label"] = "x"
    adata.varm["de"] = de
    with pytest.raises(TypeError, match="not numeric"):
        gdx.tl.enrich(adata, key="de", net=net, stat="label")


def test_get_enrich_results(de_adata):
    adata, net = de_adata
    gdx.tl.enrich(adata, key="de", net=net)
    assert gdx.get.enrich_keys(adata) == ["enrich_ulm_de"]
    res = gdx.get.enrich_results(adata, "enrich_ulm_de")
    res.loc["0", "score"] = 1e9
    assert adata.uns["enrich_ulm_de"]["results"].loc["0", "score"] != 1e9
    with pytest.raises(KeyError, match="no enrichment result"):
        gdx.get.enrich_results(adata, "enrich_gsea_de")


def test_universe_depends_on_the_method(de_adata):
    # independent filtering: padj NaN with a finite statistic; ULM keeps the genes, ORA leaves them out
    adata, net = de_adata
    de = adata.varm["de"]
    de.iloc[100:105, de.columns.get_loc("padj")] = np.nan
    adata.varm["de"] = de
    gdx.tl.enrich(adata, key="de", net=net)
    gdx.tl.enrich(adata, key="de", net=net, method="ora", lfc_threshold=0.5)
    assert adata.uns["enrich_ulm_de"]["n_universe"] == 190
    assert adata.uns["enrich_ora_de"]["n_universe"] == 185
    up = adata.uns["enrich_ora_de"]["results"].set_index(["direction", "source"]).loc[("up", "UP")]
    assert up["n_genes"] == 20  # genes 100-104 of the UP set are outside the ORA universe


def test_all_nan_statistic_is_an_error(de_adata, unchanged):
    adata, net = de_adata
    de = adata.varm["de"]
    de["stat"] = np.nan
    adata.varm["de"] = de
    check = unchanged(adata)
    with pytest.raises(ValueError, match="no gene with finite"):
        gdx.tl.enrich(adata, key="de", net=net)
    check()


def test_exact_zero_statistics_are_not_measured(de_adata):
    adata, net = de_adata
    de = adata.varm["de"]
    de.iloc[:190, de.columns.get_loc("stat")] = 0.0
    de.iloc[:3, de.columns.get_loc("stat")] = 1.0
    adata.varm["de"] = de
    with pytest.raises(ValueError, match="no gene set has at least tmin=5"):
        gdx.tl.enrich(adata, key="de", net=net)
