import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

import gendex as gdx
from gendex.stats import auroc, average_precision, confusion_rates, fdr_curve, precision_recall_curve, roc_curve


@pytest.fixture
def sim():
    adata = gdx.datasets.simulate_counts(n_samples=10, n_genes=1500, frac_de=0.1, random_state=5)
    gdx.pp.filter_by_expr(adata, group="condition")
    gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    return adata


@pytest.mark.parametrize("ties", [False, True])
def test_auc_kernels_match_sklearn(ties):
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.2
    s = rng.normal(size=500) + y
    if ties:
        s = np.round(s, 1)
    assert np.isclose(auroc(y, s), roc_auc_score(y, s), rtol=1e-12)
    assert np.isclose(average_precision(y, s), average_precision_score(y, s), rtol=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    recall, precision, _ = precision_recall_curve(y, s)
    assert recall[-1] == 1 and np.isclose(precision[-1], y.mean())


def test_kernels_nan_scores_rank_last_and_rates():
    y = np.array([True, True, False, False])
    assert auroc(y, [np.nan, 2.0, 1.0, 0.0]) == 0.5  # NaN true gene ranks below both false ones
    rates = confusion_rates(y, [True, False, False, False])
    assert rates == {
        "TP": 1,
        "FP": 0,
        "FN": 1,
        "TN": 2,
        "TPR": 0.5,
        "FPR": 0.0,
        "FNR": 0.5,
        "FDR": 0.0,
        "precision": 1.0,
    }
    assert np.isnan(confusion_rates(y, [False] * 4)["precision"])
    curve = fdr_curve(y, [0.001, np.nan, 0.02, 0.2], [0.01, 0.05, 0.5])
    np.testing.assert_allclose(curve["observed_fdr"], [0.0, 0.5, 2 / 3])
    np.testing.assert_allclose(curve["tpr"], [0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="true and false"):
        roc_curve([True, True], [1.0, 2.0])


def test_evaluate_limma_on_simulation(sim, tmp_path):
    metrics = gdx.tl.evaluate_de(sim, key="limma_voom")
    assert list(metrics.index) == ["limma_voom"]
    row = metrics.iloc[0]
    truth = sim.var["is_de"].to_numpy()
    called = (sim.varm["limma_voom"]["padj"] < 0.05).to_numpy()
    assert row["TP"] == int((truth & called).sum()) and row["FP"] == int((~truth & called).sum())
    assert row["TPR"] > 0.5 and row["FDR"] < 0.1 and row["FPR"] < 0.02
    assert np.isclose(row["FNR"], 1 - row["TPR"]) and np.isclose(row["precision"], 1 - row["FDR"])
    assert row["AUROC"] > 0.9 and row["AUPRC"] > 0.7
    score = -np.log10(sim.varm["limma_voom"]["pvalue"].to_numpy())
    assert np.isclose(row["AUROC"], roc_auc_score(truth, score))
    assert np.isclose(row["AUPRC"], average_precision_score(truth, score))
    rec = sim.uns["eval_limma_voom"]
    assert set(rec) >= {"params", "metrics", "roc", "pr", "fdr"}
    assert rec["fdr"].shape[0] == 50
    path = tmp_path / "e.h5ad"
    sim.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(back.uns["eval_limma_voom"]["metrics"], rec["metrics"], check_dtype=False)
    pd.testing.assert_frame_equal(back.uns["eval_limma_voom"]["roc"], rec["roc"])


def test_evaluate_good_and_random_scores(sim):
    rng = np.random.default_rng(1)
    table = sim.varm["limma_voom"].copy()
    table["oracle"] = np.abs(sim.var["true_log2fc"].to_numpy()) + rng.uniform(0, 0.01, sim.n_vars)
    table["random"] = rng.uniform(size=sim.n_vars)
    sim.varm["limma_voom"] = table
    good = gdx.tl.evaluate_de(sim, key="limma_voom", score="oracle", key_added="eval_oracle")
    rand = gdx.tl.evaluate_de(sim, key="limma_voom", score="random", key_added="eval_random")
    assert good["AUROC"].iloc[0] == 1.0 and good["AUPRC"].iloc[0] == 1.0
    assert 0.4 < rand["AUROC"].iloc[0] < 0.6
    assert rand["AUPRC"].iloc[0] < 0.25
    stat = gdx.tl.evaluate_de(sim, key="limma_voom", score="stat", key_added="eval_stat")
    assert np.isclose(stat["AUROC"].iloc[0], roc_auc_score(sim.var["is_de"], np.abs(sim.varm["limma_voom"]["stat"])))


def test_evaluate_nan_padj_not_called(sim):
    table = sim.varm["limma_voom"].copy()
    table.loc[table.index[:50], ["padj", "pvalue"]] = np.nan
    sim.varm["limma_voom"] = table
    m = gdx.tl.evaluate_de(sim, key="limma_voom")
    assert m["n_called"].iloc[0] == int((table["padj"] < 0.05).sum())


def test_evaluate_calls_on_raw_pvalue(sim):
    m = gdx.tl.evaluate_de(sim, "limma_voom", call="pvalue", threshold=0.05, key_added="eval_p")
    table, truth = sim.varm["limma_voom"], sim.var["is_de"].to_numpy()
    called = (table["pvalue"] < 0.05).to_numpy()
    row = m.iloc[0]
    assert (row["call"], row["threshold"]) == ("pvalue", 0.05)
    assert row["n_called"] == called.sum() and row["FP"] == (called & ~truth).sum()
    assert row["FPR"] == pytest.approx((called & ~truth).sum() / (~truth).sum())
    # raw p calls more genes than padj at the same level
    assert row["n_called"] > gdx.tl.evaluate_de(sim, "limma_voom")["n_called"].iloc[0]
    assert sim.uns["eval_p"]["params"]["call"] == "pvalue"


def test_evaluate_null_simulation(sim, unchanged):
    """No truly DE gene: every call is false (FDR 1), TPR/FNR/AUROC undefined (NaN), FPR the share called."""
    sim.var["none_de"] = False
    m = gdx.tl.evaluate_de(sim, "limma_voom", truth="none_de", call="pvalue", key_added="eval_null").iloc[0]
    called = (sim.varm["limma_voom"]["pvalue"] < 0.05).to_numpy()
    assert called.any() and m["n_true"] == 0 and m["FDR"] == 1.0 and m["FP"] == called.sum()
    assert m["FPR"] == pytest.approx(called.mean())
    assert np.isnan(m["TPR"]) and np.isnan(m["FNR"]) and np.isnan(m["AUROC"]) and np.isnan(m["AUPRC"])
    assert sim.uns["eval_null"]["roc"].empty and sim.uns["eval_null"]["pr"].empty
    sim.var["all_de"] = True
    m = gdx.tl.evaluate_de(sim, "limma_voom", truth="all_de", key_added="eval_all").iloc[0]
    assert m["FDR"] == 0.0 and np.isnan(m["FPR"]) and np.isnan(m["AUROC"]) and m["TPR"] > 0


def test_evaluate_old_argument_names_warn(sim):
    with pytest.warns(FutureWarning, match="truth_key"):
        old = gdx.tl.evaluate_de(sim, key="limma_voom", truth_key="is_de", key_added="eval_old")
    with pytest.warns(FutureWarning, match="alpha"):
        old_alpha = gdx.tl.evaluate_de(sim, key="limma_voom", alpha=0.1, key_added="eval_old_alpha")
    pd.testing.assert_frame_equal(old, gdx.tl.evaluate_de(sim, "limma_voom"))
    assert old_alpha["threshold"].iloc[0] == 0.1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"key": "nope"}, KeyError, "nope"),
        ({"key": "limma_voom", "truth": "missing"}, KeyError, "missing"),
        ({"key": "limma_voom", "truth": "true_log2fc"}, TypeError, "boolean"),
        ({"key": "limma_voom", "score": "nocol"}, KeyError, "nocol"),
        ({"key": "limma_voom", "call": "lfsr"}, KeyError, "call='padj' or 'pvalue'"),
        ({"key": "limma_voom", "threshold": 1.5}, ValueError, "threshold"),
    ],
)
def test_evaluate_bad_input(sim, unchanged, kwargs, error, match):
    check = unchanged(sim)
    with pytest.raises(error, match=match):
        gdx.tl.evaluate_de(sim, **kwargs)
    check()


def test_evaluate_copy_leaves_adata_alone(sim):
    metrics = gdx.tl.evaluate_de(sim, "limma_voom", key_added="eval_pos")
    out = gdx.tl.evaluate_de(sim, "limma_voom", key_added="eval_copy", copy=True)
    assert "eval_copy" not in sim.uns and "eval_copy" in out.uns
    pd.testing.assert_frame_equal(out.uns["eval_copy"]["metrics"], metrics)
