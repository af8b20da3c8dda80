import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import gendex as gdx


@pytest.fixture
def adata():
    """Eight genes with known calls: padj and log2FoldChange set by hand (one untested gene)."""
    a = AnnData(np.ones((3, 8)))
    a.var_names = [f"g{i}" for i in range(8)]
    table = pd.DataFrame(
        {
            "baseMean": 10.0,
            "log2FoldChange": [2.0, 0.5, -3.0, -0.2, 4.0, 0.0, -1.5, 1.0],
            "stat": 1.0,
            "pvalue": [0.001, 0.01, 0.0001, 0.02, 0.3, 0.9, 0.04, np.nan],
            "padj": [0.01, 0.04, 0.001, 0.049, 0.5, 0.95, 0.06, np.nan],
        },
        index=a.var_names,
    )
    a.varm["de"] = table
    a.uns["de"] = {"method": "hand"}
    return a


def test_de_summary_counts_up_down_not_significant(adata, unchanged):
    check = unchanged(adata)
    s = gdx.get.de_summary(adata, "de")
    check()
    assert s.loc["de"].to_dict() == {"up": 2, "down": 2, "not_significant": 3, "not_tested": 1}
    assert s.loc["de"].sum() == adata.n_vars
    # an lfc threshold moves small significant changes to not significant (limma's decideTests(lfc=1))
    s = gdx.get.de_summary(adata, "de", lfc_threshold=1.0)
    assert s.loc["de"].to_dict() == {"up": 1, "down": 1, "not_significant": 5, "not_tested": 1}
    # raw p calls gene 6 (p 0.04) too
    s = gdx.get.de_summary(adata, "de", call="pvalue")
    assert s.loc["de", "down"] == 3


def test_de_summary_of_several_results_equals_counts():
    sim = gdx.datasets.simulate_counts(n_samples=8, n_genes=400)
    gdx.pp.filter_by_expr(sim, group="condition")
    gdx.tl.limma_voom(sim, design="~condition", contrast=["condition", "B", "A"])
    gdx.pp.log_cpm(sim)
    gdx.tl.ttest(sim, groupby="condition", group1="B", group2="A", layer="log_cpm")
    s = gdx.get.de_summary(sim)
    assert list(s.index) == gdx.get.de_keys(sim) and {"limma_voom", "ttest"} <= set(s.index)
    res = sim.varm["limma_voom"]
    called = res["padj"] < 0.05
    assert s.loc["limma_voom", "up"] == (called & (res["log2FoldChange"] > 0)).sum() > 0
    assert s.loc["limma_voom", "down"] == (called & (res["log2FoldChange"] < 0)).sum()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"keys": "nope"}, KeyError, "nope"),
        ({"keys": "de", "alpha": 0}, ValueError, "alpha"),
        ({"keys": "de", "lfc_threshold": -1}, ValueError, "lfc_threshold"),
        ({"keys": "de", "call": "qvalue"}, KeyError, "qvalue"),
    ],
)
def test_de_summary_bad_input(adata, unchanged, kwargs, error, match):
    check = unchanged(adata)
    with pytest.raises(error, match=match):
        gdx.get.de_summary(adata, **kwargs)
    check()


def test_de_summary_without_results():
    with pytest.raises(ValueError, match="no DE result"):
        gdx.get.de_summary(AnnData(np.ones((2, 2))))
