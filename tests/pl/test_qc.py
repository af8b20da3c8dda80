import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

import gendex as gdx
from gendex.pl._qc import _density_data, _library_sizes_data


def trapezoid(y, x):
    y, x = np.asarray(y), np.asarray(x)
    return float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum())


@pytest.fixture
def qc(adata):
    gdx.pp.qc_metrics(adata)
    return adata


# --- library sizes --------------------------------------------------------------------------------


def test_library_sizes_data(qc):
    df = _library_sizes_data(qc, color="condition")
    assert list(df.index) == list(qc.obs_names)
    np.testing.assert_array_equal(df["library_size"], qc.layers["counts"].sum(axis=1))
    assert list(df["condition"]) == list(qc.obs["condition"])
    assert list(df["label"]) == list(qc.obs_names)


def test_library_sizes_bars_colours_and_labels(qc, tmp_path):
    qc.obs["short"] = [f"s{i}" for i in range(qc.n_obs)]
    ax = gdx.pl.library_sizes(qc, color="condition", labels="short", save=tmp_path / "lib.png")
    bars = ax.patches
    assert len(bars) == qc.n_obs
    lib = qc.obs["library_size"].to_numpy()
    scale = 1e6 if lib.max() >= 1e6 else 1.0
    np.testing.assert_allclose([b.get_height() for b in bars], lib / scale)
    groups = qc.obs["condition"].to_numpy()
    colours = {g: {b.get_facecolor() for b, gg in zip(bars, groups, strict=True) if gg == g} for g in ("A", "B")}
    assert len(colours["A"]) == len(colours["B"]) == 1 and colours["A"] != colours["B"]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(qc.obs["short"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B"]
    assert "library size" in ax.get_ylabel()
    assert (tmp_path / "lib.png").stat().st_size > 0


def test_library_sizes_into_given_ax_and_numeric_colour(qc):
    fig, ax = plt.subplots()
    out = gdx.pl.library_sizes(qc, color="true_size_factor", ax=ax)
    assert out is ax
    assert len(fig.axes) == 2  # the colour bar


def test_library_sizes_uses_stored_palette(qc):
    qc.uns["condition_colors"] = ["#ff0000", "#0000ff"]
    ax = gdx.pl.library_sizes(qc, color="condition")
    first_b = list(qc.obs["condition"]).index("B")
    assert ax.patches[0].get_facecolor() == to_rgba("#ff0000")
    assert ax.patches[first_b].get_facecolor() == to_rgba("#0000ff")


def test_library_sizes_needs_qc_metrics(adata):
    with pytest.raises(KeyError, match=r"gdx.pp.qc_metrics"):
        gdx.pl.library_sizes(adata)
    gdx.pp.qc_metrics(adata)
    with pytest.raises(KeyError, match=r"`adata.obs\['batch'\]` not found"):
        gdx.pl.library_sizes(adata, color="batch")
    assert plt.get_fignums() == []  # nothing drawn before the inputs were checked


# --- density --------------------------------------------------------------------------------------


def test_density_data(adata):
    gdx.pp.log_cpm(adata)
    df = _density_data(adata, color="condition", n_points=200)
    assert list(df.columns) == ["sample", "x", "density", "condition"]
    assert len(df) == adata.n_obs * 200
    for name, curve in df.groupby("sample"):
        assert np.isclose(trapezoid(curve["density"], curve["x"]), 1.0, atol=1e-2)
        values = adata[name].layers["log_cpm"].ravel()
        # the curve peaks where the sample's values are densest
        hist, edges = np.histogram(values, bins=20)
        peak = curve["x"].to_numpy()[curve["density"].argmax()]
        assert edges[max(hist.argmax() - 2, 0)] <= peak <= edges[min(hist.argmax() + 3, 20)]


def test_density_single_panel(adata):
    gdx.pp.log_cpm(adata)
    ax = gdx.pl.density(adata)
    assert len(ax.get_lines()) == adata.n_obs
    assert [line.get_label() for line in ax.get_lines()] == list(adata.obs_names)
    assert ax.get_xlabel() == "log2 CPM"
    assert len({line.get_color() for line in ax.get_lines()}) == adata.n_obs


def test_density_before_and_after_a_filter(adata):
    gdx.pp.log_cpm(adata)
    raw = adata.copy()
    gdx.pp.filter_by_expr(adata, group="condition")
    gdx.pp.log_cpm(adata)
    fig = gdx.pl.density(adata, before=raw, color="condition")
    before_ax, after_ax = fig.axes[:2]
    assert f"{raw.n_vars:,} genes" in before_ax.get_title() and "before" in before_ax.get_title()
    assert f"{adata.n_vars:,} genes" in after_ax.get_title() and "after" in after_ax.get_title()
    cut = np.log2(adata.uns["filter_by_expr"]["cpm_cutoff"])
    for axis in (before_ax, after_ax):
        curves = [line for line in axis.get_lines() if line.get_label() in set(adata.obs_names)]
        assert len(curves) == adata.n_obs
        cutoff_lines = [line for line in axis.get_lines() if line.get_linestyle() == "--"]
        assert len(cutoff_lines) == 1 and np.allclose(cutoff_lines[0].get_xdata(), cut)
    # the filter removes low-expression genes: less density below the cutoff afterwards
    data_before = _density_data(raw)
    data_after = _density_data(adata)
    low_before = data_before.loc[data_before["x"] < cut, "density"].sum()
    low_after = data_after.loc[data_after["x"] < cut, "density"].sum()
    assert low_after < low_before

    # a sample keeps its colour across the panels; colours follow the condition
    def colour_of(axis):
        return {line.get_label(): line.get_color() for line in axis.get_lines() if line.get_label() in names}

    names = set(adata.obs_names)
    assert colour_of(before_ax) == colour_of(after_ax)
    colours = colour_of(after_ax)
    groups = adata.obs["condition"]
    assert len({colours[s] for s in adata.obs_names[groups == "A"]}) == 1


def test_density_given_axes(adata):
    gdx.pp.log_cpm(adata)
    raw = adata.copy()
    fig, axs = plt.subplots(1, 2)
    out = gdx.pl.density(adata, before=raw, ax=axs, show_cutoff=False)
    assert out is fig
    with pytest.raises(TypeError, match="pair of Axes"):
        gdx.pl.density(adata, before=raw, ax=axs[0])


def test_density_errors(adata):
    with pytest.raises(KeyError, match=r"gdx.pp.log_cpm"):
        gdx.pl.density(adata)
    gdx.pp.log_cpm(adata)
    with pytest.raises(KeyError, match=r"`adata.obs\['batch'\]` not found"):
        gdx.pl.density(adata, color="batch")
    assert plt.get_fignums() == []
    assert isinstance(_density_data(adata), pd.DataFrame)
