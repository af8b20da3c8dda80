"""Heatmap of the top DE genes (row z-scores of an expression layer, samples grouped by an ``obs`` column)."""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._validation import check_obs_key, to_dense
from ._data import de_table, gene_labels, numeric, result_title
from ._labels import sample_labels
from ._utils import finish, get_ax

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

#: Expression layers and the ``gdx.pp`` function that writes each (listed in errors when only the ones present).
_LAYER_MAKERS = {
    "log_cpm": "log_cpm",
    "log2": "log2_normalize",
    "vst": "vst",
    "rlog": "rlog",
    "normalized": "normalize",
}
#: how the colour bar names a layer's values
_LAYER_NAMES = {"log_cpm": "log2-CPM", "log2": "log2", "vst": "VST", "rlog": "rlog", "normalized": "normalised counts"}


def _missing_layer_message(adata: AnnData, layer: str) -> str:
    from .. import pp

    makers = {name: fn for name, fn in _LAYER_MAKERS.items() if hasattr(pp, fn)}
    if layer in makers:
        how = f"make it with `gdx.pp.{makers[layer]}(adata)`"
    else:
        options = ", ".join(f"`gdx.pp.{fn}(adata)` (layer {name!r})" for name, fn in makers.items())
        how = f"make an expression layer with {options} and pass its name"
    return f"`adata.layers[{layer!r}]` not found ({how}); available layers: {list(adata.layers)}"


def _default_groupby(adata: AnnData, key: str) -> str | None:
    """The factor of the stored contrast (``uns[key]["contrast"][0]``) when it is an ``obs`` column."""
    record = adata.uns.get(key)
    contrast = record.get("contrast") if isinstance(record, dict) else None
    if contrast is not None and len(contrast) == 3 and str(contrast[0]) in adata.obs.columns:
        return str(contrast[0])
    return None


def _sample_order(adata: AnnData, groupby: str | None) -> tuple[np.ndarray, pd.Series | None]:
    """Positions of the samples ordered by group (stable within a group) and the group of each, reordered."""
    if groupby is None:
        return np.arange(adata.n_obs), None
    col = check_obs_key(adata, groupby)
    cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype(str).astype("category")
    codes = cat.cat.codes.to_numpy()
    if (codes < 0).any():
        raise ValueError(f"`adata.obs[{groupby!r}]` has missing values; fill or drop them first")
    order = np.argsort(codes, kind="stable")
    return order, cat.iloc[order].astype(str)


def _row_zscore(x: np.ndarray) -> np.ndarray:
    """z-score each row (sd with ddof=1), NaN-aware; constant rows become 0, empty rows stay NaN."""
    ok = np.isfinite(x)
    n = ok.sum(axis=1, keepdims=True)
    xz = np.where(ok, x, 0.0)
    mean = xz.sum(axis=1, keepdims=True) / np.maximum(n, 1)
    ss = (np.where(ok, x - mean, 0.0) ** 2).sum(axis=1, keepdims=True)
    sd = np.sqrt(ss / np.maximum(n - 1, 1))
    z = np.where(sd > 0, (x - mean) / np.where(sd > 0, sd, 1.0), 0.0)
    return np.where(ok, z, np.nan)


def _heatmap_data(
    adata: AnnData,
    key: str = "deseq2",
    *,
    n_genes: int = 50,
    groupby: str | None = None,
    layer: str | None = "log_cpm",
    alpha: float | None = None,
) -> pd.DataFrame:
    """Row z-scores (genes x samples) of ``layer`` for the top DE genes of ``varm[key]``.

    Up to ``ceil(n_genes / 2)`` genes with the largest positive ``stat`` and ``floor(n_genes / 2)`` with the
    most negative (restricted to ``padj < alpha`` when ``alpha`` is given), ordered by decreasing ``stat``.
    Columns are the samples ordered by ``obs[groupby]`` (its category order; stable within a group). When
    ``groupby`` is None the factor of the stored contrast is used if there is one.
    """
    if isinstance(n_genes, bool) or not isinstance(n_genes, int | np.integer) or n_genes < 2:
        raise ValueError(f"`n_genes` must be an int >= 2, got {n_genes!r}")
    if alpha is not None and not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1) or None, got {alpha!r}")
    table = de_table(adata, key, ("stat", "padj"))
    if layer is not None and layer not in adata.layers:
        raise KeyError(_missing_layer_message(adata, layer))
    if groupby is None:
        groupby = _default_groupby(adata, key)
    order, _groups = _sample_order(adata, groupby)

    stat = numeric(table, "stat")
    ok = np.isfinite(stat)
    if alpha is not None:
        with np.errstate(invalid="ignore"):
            ok &= numeric(table, "padj") < alpha
    n_up = (int(n_genes) + 1) // 2
    n_down = int(n_genes) // 2
    up = np.flatnonzero(ok & (stat > 0))
    down = np.flatnonzero(ok & (stat < 0))
    up = up[np.argsort(-stat[up], kind="stable")][:n_up]
    down = down[np.argsort(stat[down], kind="stable")][:n_down][::-1]
    genes = np.concatenate([up, down])
    if genes.size == 0:
        raise ValueError(
            f"no gene of `adata.varm[{key!r}]` has a finite non-zero `stat`"
            + (f" and padj < {alpha}" if alpha is not None else "")
        )
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ValueError("`adata.X` is empty (None); pass `layer=` naming an expression layer")
    x = to_dense(matrix[:, genes], dtype=np.float64).T[:, order]
    return pd.DataFrame(_row_zscore(x), index=adata.var_names[genes], columns=adata.obs_names[order])


def heatmap(
    adata: AnnData,
    key: str = "deseq2",
    *,
    n_genes: int = 50,
    groupby: str | None = None,
    layer: str | None = "log_cpm",
    alpha: float | None = None,
    gene_symbols: str | None = "symbol",
    labels: bool | str = True,
    cmap: str = "RdBu_r",
    vmax: float = 2.5,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **imshow_kwargs: Any,
) -> Axes:
    """Heatmap of the top DE genes: half up, half down, ordered by signed ``stat``, rows z-scored.

    Nothing is recomputed: the genes come from ``varm[key]["stat"]`` and the values from an existing
    expression layer, z-scored per gene across samples. Samples are grouped by an ``obs`` column.

    Parameters
    ----------
    adata
        AnnData with a DE result in ``varm[key]`` and an expression layer.
    key
        The result's ``key_added``.
    n_genes
        Number of genes: ``ceil(n_genes / 2)`` with the largest positive ``stat`` on top,
        ``floor(n_genes / 2)`` with the most negative below (fewer when fewer exist).
    groupby
        ``obs`` column grouping the samples (in its category order); None uses the factor of the stored
        contrast when there is one, else the samples stay in their order.
    layer
        Expression layer on a log scale, e.g. ``"log_cpm"`` (:func:`gendex.pp.log_cpm`), ``"log2"``
        (:func:`gendex.pp.log2_normalize`) or a DESeq2 ``"vst"``/``"rlog"`` layer; None means ``X``.
    alpha
        When given, only genes with ``padj < alpha`` are eligible.
    gene_symbols
        ``var`` column with gene symbols for the row labels; ``var_names`` where absent or empty.
    labels
        Column labels: True, short sample names (the rule every plot uses: ``MCL1-DG`` for
        ``MCL1-DG_BC2CTUACXX_ACTTGA_L002_R1``); a string, that ``obs`` column; False, the full ``obs_names``.
    cmap
        Diverging colour map.
    vmax
        The colour scale spans ``[-vmax, vmax]`` z-scores.
    ax
        Axes to draw into; a new figure is created when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter.
    save
        Full path to save the figure to.
    **imshow_kwargs
        Passed to :meth:`~matplotlib.axes.Axes.imshow`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` holding the heatmap (its colour bar sits beside it).

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.pp.log_cpm(adata)  # doctest: +SKIP
    >>> gdx.pl.heatmap(adata, "deseq2", n_genes=40, groupby="condition")  # doctest: +SKIP
    """
    if not vmax > 0:
        raise ValueError(f"`vmax` must be > 0, got {vmax!r}")
    if groupby is None:
        groupby = _default_groupby(adata, key)
    data = _heatmap_data(adata, key, n_genes=n_genes, groupby=groupby, layer=layer, alpha=alpha)
    names = sample_labels(adata, labels=labels) if labels is not False else None
    columns = data.columns.astype(str).tolist() if names is None else names.loc[data.columns].tolist()
    rows = gene_labels(adata, gene_symbols).loc[data.index]
    n_rows, n_cols = data.shape
    ax = get_ax(ax, figsize=(max(4.0, 0.3 * n_cols + 2.5), max(3.0, 0.16 * n_rows + 1.5)))
    style = {"aspect": "auto", "interpolation": "nearest"} | dict(imshow_kwargs)
    image = ax.imshow(data.to_numpy(), cmap=cmap, vmin=-vmax, vmax=vmax, **style)
    what = "X" if layer is None else _LAYER_NAMES.get(layer, layer)
    ax.figure.colorbar(image, ax=ax, label=f"row z-score of {what}", shrink=0.6)
    ax.set_yticks(np.arange(n_rows), labels=rows.tolist(), fontsize="x-small")
    ax.set_xticks(np.arange(n_cols), labels=columns, rotation=90, fontsize="x-small")
    n_up = int((numeric(adata.varm[key], "stat")[adata.var_names.get_indexer(data.index)] > 0).sum())
    if 0 < n_up < n_rows:
        ax.axhline(n_up - 0.5, color="black", linewidth=1.0)
    if groupby is not None:
        groups = adata.obs.loc[data.columns, groupby].astype(str).to_numpy()
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        ends = np.r_[starts[1:], n_cols]
        for s in starts[1:]:
            ax.axvline(s - 0.5, color="black", linewidth=1.0)
        top = ax.secondary_xaxis("top")
        names = groups[starts].tolist()
        top.set_xticks((starts + ends - 1) / 2.0, labels=names, fontsize="small")
        if _labels_overlap(ax, names, ends - starts, n_cols, "small"):
            top.tick_params(axis="x", labelrotation=90)
        top.tick_params(length=0)
        top.set_xlabel(groupby)
    ax.set_xlabel("sample")
    ax.set_title(f"{result_title(adata, key)}\ntop {n_rows} genes by stat")
    finish(ax, show=show, save=save)
    return ax


def _labels_overlap(ax, labels: list[str], spans: np.ndarray, n_cols: int, fontsize: str) -> bool:
    """Whether horizontal labels, centred on groups of ``spans`` columns, are wider than their groups."""
    from matplotlib.font_manager import FontProperties

    points = FontProperties(size=fontsize).get_size_in_points()
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    need = np.array([len(lab) for lab in labels]) * 0.6 * points / 72.0  # average glyph ~0.6 em
    return bool(np.any(need > 0.95 * spans * width_in / n_cols))
