import numpy as np
import pandas as pd
import pytest

import gendex as gdx
from gendex.pl._data import METHOD_NAMES
from gendex.pl._evaluate import _fdr_curve_data, _roc_data


@pytest.fixture
def evaluated():
    adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=600, random_state=2)
    gdx.pp.filter_by_expr(adata, group="condition")
    gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    gdx.pp.log_cpm(adata)
    gdx.tl.ttest(adata, groupby="condition", group1="B", group2="A", layer="log_cpm")
    gdx.tl.evaluate_de(adata, key="limma_voom")
    gdx.tl.evaluate_de(adata, key="ttest")
    return adata


def test_roc_data_and_plot(evaluated):
    data = _roc_data(evaluated, ["limma_voom", "ttest"])
    assert set(data["key"]) == {"limma_voom", "ttest"}
    sub = data[data["key"] == "ttest"]
    np.testing.assert_array_equal(sub["fpr"], evaluated.uns["eval_ttest"]["roc"]["fpr"])
    auc = evaluated.uns["eval_limma_voom"]["metrics"]["AUROC"].iloc[0]
    assert f"{auc:.3f}" in data.loc[data["key"] == "limma_voom", "label"].iloc[0]
    ax = gdx.pl.roc(evaluated, keys=["limma_voom", "ttest"])
    lines = ax.get_lines()
    assert len(lines) == 3  # two methods and the diagonal
    np.testing.assert_array_equal(lines[0].get_xdata(), evaluated.uns["eval_limma_voom"]["roc"]["fpr"])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    ttest = METHOD_NAMES[evaluated.uns["ttest"]["method"]]  # "Student t-test" or "Welch t-test"
    assert labels[0].startswith("limma-voom (AUROC") and labels[1].startswith(f"{ttest} (AUROC")
    assert ax.get_title() == "ROC: B vs A"
    # the evaluation key itself works too
    assert gdx.pl.roc(evaluated, keys="eval_ttest") is not None


def test_fdr_curve_data_and_plot(evaluated):
    data = _fdr_curve_data(evaluated, ["limma_voom", "ttest"])
    assert list(data.columns) == ["key", "alpha", "observed_fdr", "tpr", "n_called"]
    assert len(data) == 100
    sub = data[data["key"] == "limma_voom"]
    assert sub["n_called"].is_monotonic_increasing
    import matplotlib.pyplot as plt

    _fig, ax = plt.subplots()
    assert gdx.pl.fdr_curve(evaluated, keys=["limma_voom", "ttest"], ax=ax) is ax
    lines = ax.get_lines()
    assert len(lines) == 3
    np.testing.assert_array_equal(lines[1].get_ydata(), evaluated.uns["eval_ttest"]["fdr"]["observed_fdr"])
    assert "nominal" in ax.get_xlabel()
    ttest = METHOD_NAMES[evaluated.uns["ttest"]["method"]]
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["limma-voom", ttest]


def test_plots_need_an_evaluation(evaluated):
    with pytest.raises(KeyError, match="evaluate_de"):
        gdx.pl.roc(evaluated, keys=["deseq2"])
    with pytest.raises(ValueError, match="empty"):
        gdx.pl.fdr_curve(evaluated, keys=[])


def test_plots_only_read(evaluated, unchanged):
    check = unchanged(evaluated)
    roc_before = evaluated.uns["eval_ttest"]["roc"].copy()
    gdx.pl.roc(evaluated, keys=["limma_voom", "ttest"])
    gdx.pl.fdr_curve(evaluated, keys=["limma_voom", "ttest"])
    check()
    pd.testing.assert_frame_equal(evaluated.uns["eval_ttest"]["roc"], roc_before)
