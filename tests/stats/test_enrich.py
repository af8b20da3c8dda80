import decoupler as dc
import numpy as np
import pytest
from scipy import sparse, stats

from gendex.stats import gsea_leading_edge, ora_test


def test_ora_test_equals_fisher_and_hypergeom():
    rng = np.random.default_rng(0)
    n_genes, n_sets = 300, 12
    membership = rng.random((n_genes, n_sets)) < 0.1
    membership[:30, 0] = True  # set 0 holds the selected genes
    selected = np.zeros(n_genes, dtype=bool)
    selected[:25] = True
    selected[rng.choice(np.arange(30, n_genes), 15, replace=False)] = True
    res = ora_test(selected, membership)
    dense_vs_sparse = ora_test(selected, sparse.csr_matrix(membership))
    for k in ("overlap", "set_size", "pvalue", "log_odds_ratio"):
        np.testing.assert_allclose(res[k], dense_vs_sparse[k])
    assert int(res["n_selected"]) == 40 and int(res["n_universe"]) == n_genes
    for j in range(n_sets):
        k = int((membership[:, j] & selected).sum())
        m = int(membership[:, j].sum())
        table = [[k, m - k], [40 - k, n_genes - m - 40 + k]]
        assert res["overlap"][j] == k and res["set_size"][j] == m
        _, p = stats.fisher_exact(table, alternative="greater")
        np.testing.assert_allclose(res["pvalue"][j], p, rtol=1e-10)
        np.testing.assert_allclose(res["pvalue"][j], stats.hypergeom.sf(k - 1, n_genes, m, 40), rtol=1e-10)
        a, b, c, d = (x + 0.5 for x in (k, m - k, 40 - k, n_genes - m - 40 + k))
        np.testing.assert_allclose(res["log_odds_ratio"][j], np.log(a * d / (b * c)))
    assert res["pvalue"][0] < 1e-8 and res["pvalue"][1:].min() > 1e-3


def test_ora_test_edge_cases_and_errors():
    sel = np.zeros(10, dtype=bool)
    mem = np.ones((10, 2), dtype=bool)
    res = ora_test(sel, mem)
    np.testing.assert_array_equal(res["pvalue"], [1.0, 1.0])  # nothing selected
    res = ora_test(np.array([1, 0, 0, 1]), np.array([[1], [1], [0], [0]]))  # 0/1 input accepted
    assert res["overlap"].tolist() == [1]
    with pytest.raises(ValueError, match="rows"):
        ora_test(sel, np.ones((9, 2), dtype=bool))
    with pytest.raises(ValueError, match="boolean"):
        ora_test(np.array([0.5, 1.0]), np.ones((2, 1)))
    with pytest.raises(ValueError, match="vector"):
        ora_test(np.ones((2, 2), dtype=bool), np.ones((2, 1)))


def test_leading_edge_matches_decoupler_running_sum():
    import pandas as pd

    rng = np.random.default_rng(3)
    n = 400
    values = rng.normal(size=n)
    names = np.array([f"g{i}" for i in range(n)])
    df = pd.DataFrame({"stat": values}, index=names)
    for shift, idx in ((2.0, np.arange(0, 30)), (-2.0, np.arange(30, 70)), (0.0, rng.choice(n, 25, replace=False))):
        v = values.copy()
        v[idx] += shift
        df["stat"] = v
        members = np.zeros(n, dtype=bool)
        members[idx] = True
        net = pd.DataFrame({"source": "S", "target": names[idx], "weight": 1.0})
        _fig, le = dc.pl.leading_edge(df, net=net, stat="stat", name="S")
        es, ours = gsea_leading_edge(v, members)
        assert set(names[ours]) == set(le)
        assert np.sign(es) == (np.sign(shift) if shift else np.sign(es))
        assert ours[~members].sum() == 0


def test_leading_edge_simple_cases():
    es, le = gsea_leading_edge(np.array([3.0, 2.0, 1.0, -1.0, -2.0]), np.array([0, 0, 0, 1, 1], dtype=bool))
    assert es == pytest.approx(-1.0) and le.tolist() == [False, False, False, True, True]
    es, le = gsea_leading_edge(np.array([1.0, 2.0]), np.array([False, False]))
    assert es == 0.0 and not le.any()
    with pytest.raises(ValueError, match="finite"):
        gsea_leading_edge(np.array([np.nan, 1.0]), np.array([True, False]))
    with pytest.raises(ValueError, match="same length"):
        gsea_leading_edge(np.array([1.0, 1.0]), np.array([True]))
