import numpy as np
import pytest
from matplotlib.collections import PathCollection

import gendex as gdx
from gendex.pl._voom import _voom_data


@pytest.fixture
def fitted(adata):
    gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    return adata


def test_voom_data_reads_the_stored_trend(fitted):
    points, line = _voom_data(fitted, "limma_voom")
    trend = fitted.uns["limma_voom"]["voom"]
    np.testing.assert_array_equal(points["sx"], trend["sx"])
    np.testing.assert_array_equal(line["y"], trend["trend_y"])
    # sx is AveExpr on the log2-count scale: AveExpr + mean(log2(lib + 1)) - log2(1e6)
    lib = fitted.layers["counts"].sum(axis=1) * fitted.uns["limma_voom"]["norm_factors"]
    offset = np.mean(np.log2(lib + 1)) - np.log2(1e6)
    used = fitted.layers["counts"].sum(axis=0) > 0
    np.testing.assert_allclose(points["sx"], fitted.varm["limma_voom"]["AveExpr"].to_numpy()[used] + offset)
    assert np.all(np.diff(line["x"]) >= 0)


def test_voom_plot_artists(fitted, tmp_path):
    import matplotlib.pyplot as plt

    _fig, ax = plt.subplots()
    out = gdx.pl.voom(fitted, ax=ax, save=tmp_path / "voom.png")
    assert out is ax
    scatter = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scatter) == 1 and scatter[0].get_offsets().shape[0] == len(fitted.uns["limma_voom"]["voom"]["sx"])
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_ydata(), fitted.uns["limma_voom"]["voom"]["trend_y"])
    assert "sqrt" in ax.get_ylabel() and "log2" in ax.get_xlabel()
    assert ax.get_title() == "limma-voom: mean-variance trend"
    assert (tmp_path / "voom.png").exists()


def test_voom_plot_missing_key(adata):
    with pytest.raises(KeyError, match="limma_voom"):
        gdx.pl.voom(adata)
    adata.uns["other"] = {"method": "x"}
    with pytest.raises(ValueError, match="voom trend"):
        gdx.pl.voom(adata, "other")


def test_voom_plot_only_reads(fitted, unchanged):
    check = unchanged(fitted)
    before = {k: np.array(v, copy=True) for k, v in fitted.uns["limma_voom"]["voom"].items()}
    gdx.pl.voom(fitted)
    check()
    for k, v in before.items():
        np.testing.assert_array_equal(fitted.uns["limma_voom"]["voom"][k], v)
