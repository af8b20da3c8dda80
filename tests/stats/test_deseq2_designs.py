"""R parity of design syntax: cell means, interactions, continuous covariates, numeric and list contrasts.

Reference: ``tests/data/deseq2_r/designs.R`` (R 4.2.2, DESeq2 1.38.3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gendex._design import design_matrix, resolve_contrast
from gendex.stats import deseq2_fit, deseq2_wald

DATA = Path(__file__).resolve().parents[1] / "data" / "deseq2_r"

DESIGNS = {"cellmeans": "~0 + group", "interaction": "~a + b + a:b", "continuous": "~age + a"}
#: gendex's columns, in R's order (R: groupXP ..., Intercept a_Y_vs_X b_Q_vs_P aY.bQ, Intercept age a_Y_vs_X)
COLUMNS = {
    "cellmeans": ["group[XP]", "group[XQ]", "group[YP]", "group[YQ]"],
    "interaction": ["Intercept", "a[T.Y]", "b[T.Q]", "a[T.Y]:b[T.Q]"],
    "continuous": ["Intercept", "age", "a[T.Y]"],
}
CASES = [
    ("cellmeans", "contrast_YQ_XP", ["group", "YQ", "XP"]),
    ("cellmeans", "list_YQ_XQ", [["group[YQ]"], ["group[XQ]"]]),
    ("cellmeans", "numeric_interaction", [1.0, -1.0, -1.0, 1.0]),
    ("interaction", "name", "a[T.Y]:b[T.Q]"),
    ("interaction", "contrast_a", ["a", "Y", "X"]),
    ("interaction", "list_a_at_Q", [["a[T.Y]", "a[T.Y]:b[T.Q]"]]),
    ("interaction", "numeric_b_at_Y", [0.0, 0.0, 1.0, 1.0]),
    ("continuous", "age", "age"),
    ("continuous", "contrast_a", ["a", "Y", "X"]),
]


@pytest.fixture(scope="module")
def data():
    counts = pd.read_csv(DATA / "designs_counts.csv.gz", index_col=0)
    obs = pd.read_csv(DATA / "designs_coldata.csv", index_col=0)
    obs[["a", "b", "group"]] = obs[["a", "b", "group"]].astype(str)
    ref = pd.read_csv(DATA / "designs_results.csv.gz", index_col=0)
    fits = {}
    for key, formula in DESIGNS.items():
        x = design_matrix(obs, formula)
        fits[key] = (x, deseq2_fit(counts.to_numpy().T, x.to_numpy(), coef_names=list(x.columns)))
    return obs, ref, fits


def test_design_columns_match_r(data):
    r_names = pd.read_csv(DATA / "designs_model_matrices.csv")
    _, _, fits = data
    for key, cols in COLUMNS.items():
        assert list(fits[key][0].columns) == cols
        assert (r_names["design"] == key).sum() == len(cols)


@pytest.mark.parametrize(("design", "label", "contrast"), CASES)
def test_contrast_forms_match_r(data, design, label, contrast):
    obs, ref, fits = data
    x, fit = fits[design]
    rc = resolve_contrast(x, obs, contrast)
    res = deseq2_wald(fit, rc.vector, alpha=0.1, contrast_samples=rc.masks)
    col = f"{design}_{label}__"
    lfc, lfc_r = res["log2FoldChange"].to_numpy(), ref[col + "log2FoldChange"].to_numpy()
    assert np.array_equal(np.isnan(lfc), np.isnan(lfc_r))
    ok = ~np.isnan(lfc)
    # 12 samples, 9 residual df: every gene's IRLS converges well inside its 1e-8 deviance tolerance, so only
    # the 10 significant digits of R's table separate the two
    assert np.max(np.abs(lfc[ok] - lfc_r[ok])) <= 1e-6
    assert np.array_equal(res["pvalue"].isna().to_numpy(), ref[col + "pvalue"].isna().to_numpy())
    assert np.array_equal(res["padj"].isna().to_numpy(), ref[col + "padj"].isna().to_numpy())
    calls = (res["padj"] < 0.1).to_numpy()
    assert np.array_equal(calls, (ref[col + "padj"] < 0.1).to_numpy())
    assert calls.sum() > 20  # the simulated effects are there


def test_contrast_forms_agree_with_each_other(data):
    obs, _, fits = data
    x = fits["cellmeans"][0]
    a = resolve_contrast(x, obs, ["group", "YQ", "XQ"]).vector
    b = resolve_contrast(x, obs, [["group[YQ]"], ["group[XQ]"]]).vector
    c = resolve_contrast(x, obs, [0, -1, 0, 1]).vector
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    xi = fits["interaction"][0]
    # the factor form is the effect at the reference level of the other factor: the interaction drops out
    np.testing.assert_array_equal(resolve_contrast(xi, obs, ["a", "Y", "X"]).vector, [0, 1, 0, 0])
    np.testing.assert_array_equal(resolve_contrast(xi, obs, [["a[T.Y]", "a[T.Y]:b[T.Q]"], []]).vector, [0, 1, 0, 1])
    np.testing.assert_array_equal(
        resolve_contrast(xi, obs, [["b[T.Q]"], ["a[T.Y]"]], list_values=(1, -0.5)).vector, [0, -0.5, 1, 0]
    )


def test_bad_contrasts_and_designs(data):
    obs, _, fits = data
    x = fits["interaction"][0]
    with pytest.raises(ValueError, match=r"not columns of the design.*Intercept"):
        resolve_contrast(x, obs, "a[T.Z]")
    with pytest.raises(ValueError, match="one weight per design column"):
        resolve_contrast(x, obs, [1.0, -1.0])
    with pytest.raises(ValueError, match="not all zero"):
        resolve_contrast(x, obs, [0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="both the numerator and the denominator"):
        resolve_contrast(x, obs, [["a[T.Y]"], ["a[T.Y]"]])
    with pytest.raises(ValueError, match="matches no coefficient"):
        resolve_contrast(design_matrix(obs, "~a"), obs, ["b", "Q", "P"])
    with pytest.raises(ValueError, match="continuous covariate"):
        resolve_contrast(fits["continuous"][0], obs, ["age", 31, 45])
    with pytest.raises(ValueError, match="rank deficient"):
        design_matrix(obs, "~group + a")
    with pytest.raises(KeyError, match="unknown `obs` column"):
        design_matrix(obs, "~0 + nope")


def test_numeric_levels_and_quoted_names():
    obs = pd.DataFrame(
        {"batch": pd.Categorical([1, 1, 2, 2, 3, 3]), "cell type": ["b", "l", "b", "l", "b", "l"]},
        index=[f"s{i}" for i in range(6)],
    )
    x = design_matrix(obs, "~batch")
    rc = resolve_contrast(x, obs, ["batch", 2, 1])
    np.testing.assert_array_equal(rc.vector, [0, 1, 0])
    assert rc.label == ["batch", "2", "1"] and rc.masks[0].sum() == 2
    xq = design_matrix(obs, "~Q('cell type')")
    np.testing.assert_array_equal(resolve_contrast(xq, obs, ["cell type", "l", "b"]).vector, [0, 1])
