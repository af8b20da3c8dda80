"""DE result plots: volcano, MA/MD and p-value histogram (each reads one ``varm`` DE table)."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ._data import DIRECTION_COLORS, de_method, de_table, gene_labels, numeric, result_title
from ._labels import place_labels
from ._utils import finish, get_ax

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

_DIRECTION_NAMES = {"ns": "not significant", "down": "down", "up": "up"}


def _check_threshold(alpha: float, lfc_threshold: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be a number in (0, 1), got {alpha!r}")
    if isinstance(lfc_threshold, bool) or not isinstance(lfc_threshold, int | float) or not lfc_threshold >= 0:
        raise ValueError(f"`lfc_threshold` must be a number >= 0, got {lfc_threshold!r}")


def _direction(lfc: np.ndarray, padj: np.ndarray, alpha: float, lfc_threshold: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        sig = (padj < alpha) & (np.abs(lfc) >= lfc_threshold)
    return np.where(sig & (lfc > 0), "up", np.where(sig & (lfc < 0), "down", "ns"))


def _palette(palette: Mapping[str, str] | None, defaults: Mapping[str, str], kwargs: Mapping[str, Any]) -> dict:
    if "c" in kwargs or "color" in kwargs:
        raise TypeError("colours are set per group; pass `palette={...}` instead of `c=`/`color=`")
    out = dict(defaults)
    if palette is not None:
        unknown = set(palette) - set(defaults)
        if unknown:
            raise ValueError(f"`palette` keys must be among {list(defaults)}, got {sorted(unknown)}")
        out.update(palette)
    return out


def _scatter_groups(
    ax: Axes,
    data: pd.DataFrame,
    x: str,
    y: str,
    group: str,
    colors: Mapping[str, str],
    names: Mapping[str, str],
    kwargs: Mapping[str, Any],
    counts: Mapping[str, int] | None = None,
) -> None:
    """One scatter (PathCollection) per non-empty group, in the order of ``names``, labelled with its size.

    ``counts`` overrides the sizes in the labels (the volcano counts the genes it draws apart at the top).
    """
    style = {"s": 8, "linewidths": 0} | dict(kwargs)
    for level, name in names.items():
        sub = data[data[group] == level]
        n = len(sub) if counts is None else int(counts.get(level, 0))
        if n:
            ax.scatter(sub[x], sub[y], c=colors[level], label=f"{name} ({n})", **style)


def _legend(ax: Axes, **kwargs: Any) -> None:
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize="small",
        title_fontsize="small",
        alignment="left",
        **kwargs,
    )


# --------------------------------------------------------------------------------------------------- volcano


def _threshold_text(call: str, alpha: float, lfc_threshold: float) -> str:
    """The significance rule as the legend states it, e.g. ``"padj < 0.05, |log2FC| >= 1"``."""
    rule = f"{'padj' if call == 'padj' else 'p'} < {alpha:g}"
    return rule + (f", |log2FC| \u2265 {lfc_threshold:g}" if lfc_threshold > 0 else "")


def _volcano_data(
    adata: AnnData,
    key: str = "deseq2",
    *,
    y: Literal["padj", "pvalue"] = "padj",
    call: Literal["padj", "pvalue"] = "padj",
    alpha: float = 0.05,
    lfc_threshold: float = 0.0,
    gene_symbols: str | None = "symbol",
    n_labels: int = 10,
) -> pd.DataFrame:
    """Per-gene volcano coordinates for the genes with a finite log2FC and a finite ``y`` and ``call`` column.

    Columns: ``label`` (symbol or name), ``log2FoldChange``, ``padj``, ``pvalue`` (when stored),
    ``neg_log10`` (-log10 of the ``y`` column; zeros are clipped to its smallest positive value), ``clipped``,
    ``direction`` (``"up"``, ``"down"``, ``"ns"``: significant when ``call < alpha`` and ``|log2FC| >=
    lfc_threshold``) and ``labelled`` (the ``n_labels`` significant genes with the smallest ``y``, ties broken
    by the larger ``|log2FC|``). With the defaults the counts of ``direction`` are the counts of genes with
    ``padj < alpha`` that the MD plot and the report give.
    """
    _check_threshold(alpha, lfc_threshold)
    for name, value in (("y", y), ("call", call)):
        if value not in ("padj", "pvalue"):
            raise ValueError(f"`{name}` must be 'padj' or 'pvalue', got {value!r}")
    if isinstance(n_labels, bool) or not isinstance(n_labels, int | np.integer) or n_labels < 0:
        raise ValueError(f"`n_labels` must be an int >= 0, got {n_labels!r}")
    columns = tuple(dict.fromkeys(("log2FoldChange", "padj", y, call)))
    table = de_table(adata, key, columns)
    lfc = numeric(table, "log2FoldChange")
    values = {c: numeric(table, c) for c in columns[1:]}
    keep = np.isfinite(lfc) & np.isfinite(values[y]) & np.isfinite(values[call])
    for c, v in values.items():
        if (v[keep] < 0).any() or (v[keep] > 1).any():
            raise ValueError(f"`adata.varm[{key!r}][{c!r}]` has values outside [0, 1]")
    lfc = lfc[keep]
    values = {c: v[keep] for c, v in values.items()}
    shown = values[y]
    positive = shown[shown > 0]
    floor = positive.min() if positive.size else 1e-300
    clipped = shown <= 0
    data = pd.DataFrame(
        {
            "label": gene_labels(adata, gene_symbols).to_numpy()[keep],
            "log2FoldChange": lfc,
            **values,
            "neg_log10": -np.log10(np.where(clipped, floor, shown)),
            "clipped": clipped,
            "direction": _direction(lfc, values[call], alpha, lfc_threshold),
        },
        index=adata.var_names[keep],
    )
    sig = data[data["direction"] != "ns"]
    order = np.lexsort((-sig["log2FoldChange"].abs().to_numpy(), sig[y].to_numpy()))
    data["labelled"] = data.index.isin(sig.index[order[:n_labels]])
    data.attrs["rule"] = _threshold_text(call, alpha, lfc_threshold)
    return data


def volcano(
    adata: AnnData,
    key: str = "deseq2",
    *,
    y: Literal["padj", "pvalue"] = "padj",
    call: Literal["padj", "pvalue"] | None = None,
    alpha: float = 0.05,
    lfc_threshold: float = 0.0,
    gene_symbols: str | None = "symbol",
    n_labels: int = 10,
    palette: Mapping[str, str] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """Volcano plot: log2 fold change against -log10 adjusted (or raw) p-value, top genes labelled.

    Genes are coloured up/down when ``call < alpha`` (and ``|log2FC| >= lfc_threshold`` when that is > 0);
    the legend states the rule and the counts, which with the defaults equal those of :func:`md` and of
    :func:`gendex.get.de_results` at ``padj < alpha``. Genes with a NaN log2FC or p-value are left out; a
    p-value of 0 is drawn at the smallest positive one with a triangle marker. Gene labels are placed inside
    the axes without overlapping each other (a small repel step, leader lines for moved labels).

    Parameters
    ----------
    adata
        AnnData with a DE result in ``varm[key]``.
    key
        The result's ``key_added`` (e.g. ``"deseq2"``, ``"limma_voom"``, ``"nbvae_de"``).
    y
        The y axis: ``"padj"`` (-log10 adjusted p-value) or ``"pvalue"`` (-log10 raw p-value, as limma's
        ``volcanoplot`` and most teaching material draw it).
    call
        The column a gene is called significant on: ``"padj"`` or ``"pvalue"``; None: the ``y`` column.
    alpha
        Threshold on ``call`` for calling a gene significant.
    lfc_threshold
        Minimum ``|log2 fold change|`` of a significant gene (0, the default: none, as in the report and the
        MD plot); when > 0, dashed lines mark it and the legend says so.
    gene_symbols
        ``var`` column with gene symbols for the labels; ``var_names`` are used where it is absent or empty.
    n_labels
        Number of significant genes (smallest ``y``) to label.
    palette
        Colours for ``"up"``, ``"down"`` and ``"ns"`` (not significant), overriding the defaults.
    title
        The title; None names the method and the contrast stored in ``uns[key]`` ("DESeq2: luminal vs basal").
    ax
        Axes to draw into; a new figure is created when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter.
    save
        Full path to save the figure to.
    **scatter_kwargs
        Passed to :meth:`~matplotlib.axes.Axes.scatter` (e.g. ``s``, ``alpha``, ``rasterized``).

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.pl.volcano(adata, "deseq2", n_labels=15)  # doctest: +SKIP
    >>> gdx.pl.volcano(adata, "ttest", y="pvalue")  # raw p on the y axis, calls at p < 0.05  # doctest: +SKIP
    """
    call = y if call is None else call
    data = _volcano_data(
        adata, key, y=y, call=call, alpha=alpha, lfc_threshold=lfc_threshold, gene_symbols=gene_symbols,
        n_labels=n_labels,
    )  # fmt: skip
    colors = _palette(palette, DIRECTION_COLORS, scatter_kwargs)
    ax = get_ax(ax, figsize=(5.5, 4.5))
    counts = data["direction"].value_counts().to_dict()  # every gene, those drawn apart at the top included
    _scatter_groups(
        ax, data[~data["clipped"]], "log2FoldChange", "neg_log10", "direction", colors, _DIRECTION_NAMES,
        scatter_kwargs, counts,
    )  # fmt: skip
    clipped = data[data["clipped"]]
    what = "padj" if y == "padj" else "p"
    if len(clipped):
        style = {"s": 14, "linewidths": 0} | dict(scatter_kwargs) | {"marker": "^"}
        ax.scatter(
            clipped["log2FoldChange"],
            clipped["neg_log10"],
            c=[colors[d] for d in clipped["direction"]],
            label=f"{what} = 0, drawn at the top ({len(clipped)}, counted above)",
            **style,
        )
    line: dict[str, Any] = {"linestyle": "--", "linewidth": 0.8, "color": "0.35", "zorder": 0}
    if call == y:
        ax.axhline(-np.log10(alpha), **line)
    if lfc_threshold > 0:
        ax.axvline(-lfc_threshold, **line)
        ax.axvline(lfc_threshold, **line)
    ax.set_xlabel("log2 fold change")
    ax.set_ylabel("-log10 adjusted p-value" if y == "padj" else "-log10 p-value")
    ax.set_title(result_title(adata, key) if title is None else title)
    if len(data):
        _legend(ax, title=data.attrs["rule"])
    ax.margins(x=0.08, y=0.08)
    labelled = data[data["labelled"]]
    place_labels(
        ax,
        labelled["log2FoldChange"],
        labelled["neg_log10"],
        labelled["label"],
        avoid_points=data.loc[~data["labelled"], ["log2FoldChange", "neg_log10"]].to_numpy(),
        marker_size=float(scatter_kwargs.get("s", 8)),
        gids=[f"label:{g}" for g in labelled.index],
    )
    finish(ax, show=show, save=save)
    return ax


# ----------------------------------------------------------------------------------------------------- MA/MD


def _md_data(
    adata: AnnData,
    key: str = "deseq2",
    *,
    alpha: float = 0.05,
    lfc_threshold: float = 0.0,
    log_mean: bool | None = None,
) -> pd.DataFrame:
    """Per-gene MA/MD coordinates: ``mean``, ``log2FoldChange``, ``padj``, ``direction``.

    ``mean`` is ``AveExpr`` (log2-CPM) for limma results and ``log10(baseMean)`` otherwise; ``log_mean``
    overrides whether ``baseMean`` is log10-transformed (None: yes, unless the method is limma or a t-test or
    ``baseMean`` has negative values, i.e. is already on a log scale). The x-axis label is in
    ``data.attrs["mean_label"]``. Genes with a non-finite mean or log2FC are left out; a NaN ``padj`` counts
    as not significant.
    """
    _check_threshold(alpha, lfc_threshold)
    table = de_table(adata, key, ("baseMean", "log2FoldChange", "padj"))
    method = de_method(adata, key)
    if "limma" in method:
        column = "AveExpr" if "AveExpr" in table.columns else "baseMean"
        mean, label = numeric(table, column), f"average log2-CPM ({column})"
        if log_mean:
            raise ValueError(f"{key!r} is a limma result: its {column} is already log2-CPM; drop `log_mean=True`")
    else:
        base = numeric(table, "baseMean")
        if log_mean is None:
            log_mean = not ("ttest" in method or "t-test" in method or (base[np.isfinite(base)] < 0).any())
        if log_mean:
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = np.where(base > 0, np.log10(np.where(base > 0, base, 1.0)), np.nan)
            label = "log10 mean of normalised counts (baseMean)"
        else:
            mean, label = base, "mean expression (baseMean)"
    lfc = numeric(table, "log2FoldChange")
    padj = numeric(table, "padj")
    keep = np.isfinite(mean) & np.isfinite(lfc)
    data = pd.DataFrame(
        {
            "mean": mean[keep],
            "log2FoldChange": lfc[keep],
            "padj": padj[keep],
            "direction": _direction(lfc[keep], padj[keep], alpha, lfc_threshold),
        },
        index=adata.var_names[keep],
    )
    data.attrs["mean_label"] = label
    return data


def md(
    adata: AnnData,
    key: str = "deseq2",
    *,
    alpha: float = 0.05,
    lfc_threshold: float = 0.0,
    log_mean: bool | None = None,
    palette: Mapping[str, str] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """MA/MD plot: mean expression against log2 fold change, significant genes coloured by direction.

    The mean is ``log10(baseMean)`` (mean of normalised counts) for DESeq2-type results and ``AveExpr``
    (average log2-CPM) for limma results, chosen from ``adata.uns[key]["method"]``.

    Parameters
    ----------
    adata
        AnnData with a DE result in ``varm[key]``.
    key
        The result's ``key_added``.
    alpha
        Adjusted p-value threshold for colouring a gene as significant (NaN ``padj``: not significant).
    lfc_threshold
        Minimum ``|log2 fold change|`` of a significant gene; when > 0, dashed lines mark it.
    log_mean
        Whether to log10-transform ``baseMean``; None decides from the method (see above).
    palette
        Colours for ``"up"``, ``"down"`` and ``"ns"``, overriding the defaults.
    ax
        Axes to draw into; a new figure is created when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter.
    save
        Full path to save the figure to.
    **scatter_kwargs
        Passed to :meth:`~matplotlib.axes.Axes.scatter`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.pl.md(adata, "limma_voom")  # doctest: +SKIP
    """
    data = _md_data(adata, key, alpha=alpha, lfc_threshold=lfc_threshold, log_mean=log_mean)
    colors = _palette(palette, DIRECTION_COLORS, scatter_kwargs)
    ax = get_ax(ax, figsize=(5.0, 4.0))
    _scatter_groups(ax, data, "mean", "log2FoldChange", "direction", colors, _DIRECTION_NAMES, scatter_kwargs)
    ax.axhline(0.0, linewidth=0.8, color="0.2", zorder=0)
    if lfc_threshold > 0:
        for y in (-lfc_threshold, lfc_threshold):
            ax.axhline(y, linestyle="--", linewidth=0.8, color="0.35", zorder=0)
    ax.set_xlabel(data.attrs["mean_label"])
    ax.set_ylabel("log2 fold change")
    ax.set_title(result_title(adata, key))
    if len(data):
        _legend(ax, title=_threshold_text("padj", alpha, lfc_threshold))
    finish(ax, show=show, save=save)
    return ax


# ------------------------------------------------------------------------------------------ p-value histogram


def _pvalue_hist_data(adata: AnnData, key: str = "deseq2", *, column: str = "pvalue", bins: int = 20) -> pd.DataFrame:
    """Histogram of the finite values of ``varm[key][column]`` on ``bins`` equal bins of [0, 1].

    Columns: ``left``, ``right``, ``count`` (one row per bin; the last bin includes 1).
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"`bins` must be an int >= 1, got {bins!r}")
    values = numeric(de_table(adata, key, (column,)), column)
    values = values[np.isfinite(values)]
    if (values < 0).any() or (values > 1).any():
        raise ValueError(f"`adata.varm[{key!r}][{column!r}]` has values outside [0, 1]; is it a p-value column?")
    counts, edges = np.histogram(values, bins=int(bins), range=(0.0, 1.0))
    return pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts})


def pvalue_hist(
    adata: AnnData,
    key: str = "deseq2",
    *,
    column: str = "pvalue",
    bins: int = 20,
    color: str = "#7f7f7f",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **bar_kwargs: Any,
) -> Axes:
    """Histogram of the p-values of a DE result, with the level expected if every gene were null.

    A flat histogram with a peak near 0 is the healthy shape; a peak near 1 or a hump in the middle points
    to a mis-specified model. NaN p-values (untested genes) are left out.

    Parameters
    ----------
    adata
        AnnData with a DE result in ``varm[key]``.
    key
        The result's ``key_added``.
    column
        Column to histogram (``"pvalue"``, or ``"padj"``).
    bins
        Number of equal-width bins on [0, 1].
    color
        Bar colour.
    ax
        Axes to draw into; a new figure is created when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter.
    save
        Full path to save the figure to.
    **bar_kwargs
        Passed to :meth:`~matplotlib.axes.Axes.bar`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.pl.pvalue_hist(adata, "deseq2", bins=40)  # doctest: +SKIP
    """
    data = _pvalue_hist_data(adata, key, column=column, bins=bins)
    ax = get_ax(ax, figsize=(4.5, 3.5))
    n = int(data["count"].sum())
    style: dict[str, Any] = {"edgecolor": "white", "linewidth": 0.5} | dict(bar_kwargs)
    ax.bar(data["left"], data["count"], width=data["right"] - data["left"], align="edge", color=color, **style)
    ax.axhline(n / len(data), linestyle="--", linewidth=0.8, color="0.2", label="expected if all genes null")
    names = {"pvalue": "p-value", "padj": "adjusted p-value"}
    ax.set_xlabel(names.get(column, column))
    ax.set_ylabel("number of genes")
    ax.set_xlim(0.0, 1.0)
    ax.set_title(f"{result_title(adata, key)} ({n:,} genes)")
    ax.legend(frameon=False, fontsize="small")
    finish(ax, show=show, save=save)
    return ax
