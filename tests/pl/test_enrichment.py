import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

import gendex as gdx
from gendex._utils import store_de_results
from gendex.pl._enrichment import _enrichment_compare_data, _enrichment_data


def store_result(adata, key, scores, padj, method="ulm", n_genes=None):
    n = len(scores)
    res = pd.DataFrame(
        {
            "source": [f"SET_{i}" for i in range(n)],
            "score": np.asarray(scores, dtype=float),
            "pvalue": np.asarray(padj, dtype=float) / 2,
            "padj": np.asarray(padj, dtype=float),
            "n_genes": np.arange(10, 10 + n) if n_genes is None else n_genes,
            "direction": np.where(np.asarray(scores) > 0, "up", "down"),
        }
    )
    adata.uns[key] = {"method": method, "results": res}


@pytest.fixture
def two(adata):
    store_result(adata, "e1", [5.0, -4.0, 0.5, 3.0, -1.0, 0.1], [1e-6, 1e-5, 0.5, 1e-3, 0.2, 0.9])
    store_result(adata, "e2", [4.0, -3.0, 1.0, -2.0, 0.2, 0.0], [0.0, 1e-4, 0.3, 1e-2, 0.8, 1.0], method="gsea")
    gdx.tl.compare_enrichment(adata, "e1", "e2", key_added="cmp")
    return adata


def test_enrichment_data_picks_most_significant_and_orders_by_score(two):
    data = _enrichment_data(two, "e1", n_sets=3)
    assert data["label"].tolist() == ["SET_0", "SET_3", "SET_1"]  # 3 smallest p-values, highest score first
    np.testing.assert_allclose(data["neg_log10_padj"], -np.log10([1e-6, 1e-3, 1e-5]))
    assert data["n_genes"].tolist() == [10, 13, 11]
    down = _enrichment_data(two, "e1", n_sets=10, direction="down")
    assert down["label"].tolist() == ["SET_4", "SET_1"]
    # GSEA p-values of exactly 0 are clipped at the smallest positive one
    gsea = _enrichment_data(two, "e2", n_sets=2)
    assert np.isfinite(gsea["neg_log10_padj"]).all() and gsea["neg_log10_padj"].max() == pytest.approx(4.0)


@pytest.mark.parametrize("kind", ["dot", "bar"])
def test_enrichment_plot_draws_the_data(two, kind, tmp_path):
    ax = gdx.pl.enrichment(two, "e1", n_sets=4, kind=kind, save=tmp_path / "e.png")
    assert isinstance(ax, Axes)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["SET_1", "SET_4", "SET_3", "SET_0"]  # bottom to top: highest score on top
    if kind == "dot":
        offsets = ax.collections[0].get_offsets()
        assert len(offsets) == 4
        np.testing.assert_allclose(np.sort(offsets[:, 0]), np.sort(-np.log10([1e-6, 1e-3, 1e-5, 0.2])))
        # the size legend sits outside the axes, where it cannot cover a dot
        ax.figure.canvas.draw()
        renderer = ax.figure.canvas.get_renderer()
        assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    else:
        widths = sorted(p.get_width() for p in ax.patches)
        np.testing.assert_allclose(widths, sorted([5.0, 3.0, -4.0, -1.0]))
    assert (tmp_path / "e.png").exists()
    assert ax.get_title() == "ULM enrichment"  # the method, not the key


def test_enrichment_on_real_tl_output(adata):
    names = adata.var_names.to_numpy()
    rng = np.random.default_rng(0)
    stat = rng.normal(size=adata.n_vars)
    stat[:15] += 4
    df = pd.DataFrame(
        {"baseMean": 100.0, "log2FoldChange": stat / 2, "stat": stat, "pvalue": 0.5, "padj": 0.5}, index=names
    )
    store_de_results(adata, "de", df, method="synthetic", params={})
    pairs = [("UP", g) for g in names[:15]]
    pairs += [(f"R{i}", g) for i in range(4) for g in rng.choice(names, 12, replace=False)]
    net = pd.DataFrame(pairs, columns=["source", "target"])
    gdx.tl.enrich(adata, key="de", net=net)
    ax = gdx.pl.enrichment(adata, "enrich_ulm_de", n_sets=3)
    assert ax.get_yticklabels()[-1].get_text() == "UP"


def test_enrichment_compare_data_and_plots(two, check_texts):
    data = _enrichment_compare_data(two, "cmp", n_sets=3)
    assert len(data) == 6 and data["result"].tolist() == [1, 2, 1, 2, 1, 2]
    assert data["label"].tolist()[::2] == ["SET_0", "SET_3", "SET_1"]  # by the first result's score
    row = data[(data["label"] == "SET_3") & (data["result"] == 2)].iloc[0]
    assert row["score"] == -2.0 and row["padj"] == 1e-2 and row["sig"]
    assert row["rel_score"] == pytest.approx(-2.0 / 4.0)  # relative to the largest |score| of result 2
    assert data.loc[(data["label"] == "SET_3") & (data["result"] == 1), "rel_score"].item() == pytest.approx(3 / 5)
    ax = gdx.pl.enrichment_compare(two, "cmp", n_sets=3)
    offsets = ax.collections[0].get_offsets()
    assert len(offsets) == 6 and set(offsets[:, 0]) == {0.0, 1.0}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["e1", "e2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["SET_1", "SET_3", "SET_0"]
    ax = gdx.pl.enrichment_compare(two, "cmp", kind="scatter", n_sets=2, labels=("DESeq2", "NB-VAE"))
    assert len(ax.collections[0].get_offsets()) == 6
    assert ax.get_xlabel() == "score (DESeq2)" and len(ax.texts) == 2
    assert "Spearman" in ax.get_title()
    check_texts(gdx.pl.enrichment_compare(two, "cmp", kind="scatter", n_sets=6))  # set names inside, apart


def _with_contrast(adata):
    """Give the two results the DE records the demo has: method names and a contrast for the colour scales."""
    de = pd.DataFrame({"baseMean": 1.0, "log2FoldChange": 0.0, "stat": 0.0, "pvalue": 0.5, "padj": 0.5},
                      index=adata.var_names)  # fmt: skip
    contrast = ["condition", "luminal", "basal"]
    store_de_results(adata, "deseq2", de, method="deseq2", params={}, contrast=contrast)
    store_de_results(adata, "nbvae_de", de, method="nbvae", params={}, contrast=contrast)
    adata.uns["e1"] |= {"de_key": "deseq2", "contrast": contrast}
    adata.uns["e2"] |= {"de_key": "nbvae_de", "contrast": contrast}
    return adata


def test_enrichment_legends_name_directions_and_caps(two):
    _with_contrast(two)
    ax = gdx.pl.enrichment(two, "e1", n_sets=4)
    assert ax.get_title() == "ULM enrichment of DESeq2: luminal vs basal"
    colorbar = ax.collections[0].colorbar
    assert colorbar.ax.get_xlabel() == "score (> 0: higher in luminal)"
    sizes = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sizes and all(float(t) <= 13 for t in sizes)  # n_genes up to 13: no capped value, no "≥"

    cmp = gdx.pl.enrichment_compare(two, "cmp", n_sets=4, max_log10=5.0)  # SET_0 has -log10 padj 6 in e1
    texts = [t.get_text() for t in cmp.get_legend().get_texts()]
    assert "\u2265 5" in texts  # the capped size is marked
    assert "padj < 0.05 (black edge)" in texts and "padj \u2265 0.05 (grey edge)" in texts  # faded dots explained
    assert [t.get_text() for t in cmp.get_xticklabels()] == ["DESeq2", "NB-VAE generative DE"]
    # e1 is ULM, e2 GSEA: the title names both methods
    assert cmp.get_title() == "ULM enrichment vs GSEA, side by side: luminal vs basal"
    bar = cmp.collections[0].colorbar
    assert bar.ax.get_xlabel().endswith("(> 0: higher in luminal)")
    # no empty band: the colour bar sits right under the dots (the result names head the columns instead)
    fig = cmp.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    gap = cmp.get_window_extent(renderer).y0 - bar.ax.get_tightbbox(renderer).y1
    assert 0 <= gap < 0.5 * fig.dpi
    assert cmp.xaxis.get_ticks_position() == "top"
    uncapped = gdx.pl.enrichment_compare(two, "cmp", n_sets=4)
    assert not any(t.get_text().startswith("\u2265") for t in uncapped.get_legend().get_texts()[:-2])


def test_plot_errors(two):
    with pytest.raises(KeyError, match="no enrichment result"):
        gdx.pl.enrichment(two, "nope")
    with pytest.raises(ValueError, match="kind"):
        gdx.pl.enrichment(two, "e1", kind="pie")
    with pytest.raises(ValueError, match="n_sets"):
        gdx.pl.enrichment(two, "e1", n_sets=0)
    with pytest.raises(ValueError, match="direction"):
        gdx.pl.enrichment(two, "e1", direction="sideways")
    with pytest.raises(KeyError, match="compare_enrichment"):
        gdx.pl.enrichment_compare(two, "e1")
    with pytest.raises(ValueError, match="kind"):
        gdx.pl.enrichment_compare(two, "cmp", kind="pie")
