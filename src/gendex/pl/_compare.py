"""Plots of a comparison written by :func:`gendex.tl.compare_de`: log2FC scatter and the NA genes."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._data import CATEGORY_COLORS, compare_record, contrast_label, gene_labels, method_name, numeric
from ._de import _legend, _palette
from ._utils import finish, get_ax, given_axes, root_figure

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Drawing order (background first) of the concordance categories.
_DRAW_ORDER = ("neither", "untested", "only1", "only2", "both")


def _keys(record: Mapping[str, Any]) -> tuple[str, str]:
    params = record.get("params", {})
    return str(params.get("key1", "result 1")), str(params.get("key2", "result 2"))


def _names(adata: AnnData, record: Mapping[str, Any]) -> tuple[str, str]:
    """The two compared results as a reader names them (their methods), the keys when the methods coincide."""
    key1, key2 = _keys(record)
    name1, name2 = method_name(adata, key1), method_name(adata, key2)
    return (name1, name2) if name1 != name2 else (key1, key2)


def _lfc_scatter_data(adata: AnnData, key: str, *, gene_symbols: str | None = "symbol") -> pd.DataFrame:
    """Genes with a finite log2FC in both results: ``label``, ``lfc1``, ``lfc2``, ``category``.

    ``category`` is the one stored by ``compare_de``; genes with both log2FCs but an NA ``padj`` in one
    result are ``"untested"`` (no call to compare).
    """
    record = compare_record(adata, key)
    table = record["table"]
    lfc1, lfc2 = numeric(table, "lfc1"), numeric(table, "lfc2")
    keep = np.isfinite(lfc1) & np.isfinite(lfc2)
    labels = gene_labels(adata, gene_symbols).reindex(table.index.astype(str))
    labels = labels.fillna(pd.Series(table.index.astype(str), index=table.index.astype(str)))
    return pd.DataFrame(
        {
            "label": labels.to_numpy()[keep],
            "lfc1": lfc1[keep],
            "lfc2": lfc2[keep],
            "category": table["category"].astype(str).to_numpy()[keep],
        },
        index=table.index[keep],
    )


def lfc_scatter(
    adata: AnnData,
    key: str,
    *,
    gene_symbols: str | None = "symbol",
    palette: Mapping[str, str] | None = None,
    fit_line: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """Scatter of two results' log2 fold changes, coloured by call concordance, with the identity line.

    Reads ``adata.uns[key]`` written by :func:`gendex.tl.compare_de`. Genes with a finite log2FC in both
    results are drawn; the title gives Pearson's r, Spearman's rho, the least-squares slope of key2 on key1
    and the call agreement, all as stored.

    Parameters
    ----------
    adata
        AnnData holding the comparison.
    key
        The comparison's ``key_added`` (default of ``compare_de``: ``f"compare_{key1}_vs_{key2}"``).
    gene_symbols
        ``var`` column with gene symbols (used by the data table; not drawn).
    palette
        Colours for the categories ``"both"``, ``"only1"``, ``"only2"``, ``"neither"``, ``"untested"``.
    fit_line
        Draw the stored regression line (``slope``, ``intercept``) beside the identity line.
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
    >>> gdx.tl.compare_de(adata, "deseq2", "nbvae_de")  # doctest: +SKIP
    >>> gdx.pl.lfc_scatter(adata, "compare_deseq2_vs_nbvae_de")  # doctest: +SKIP
    """
    data = _lfc_scatter_data(adata, key, gene_symbols=gene_symbols)
    record = compare_record(adata, key)
    key1, key2 = _keys(record)
    name1, name2 = _names(adata, record)
    summary = record["summary"]
    colors = _palette(palette, CATEGORY_COLORS, scatter_kwargs)
    names = {
        "neither": "significant in neither",
        "untested": "padj NA in one",
        "only1": f"significant only in {name1}",
        "only2": f"significant only in {name2}",
        "both": "significant in both",
    }
    ax = get_ax(ax, figsize=(5.0, 4.5))
    style = {"s": 8, "linewidths": 0} | dict(scatter_kwargs)
    for level in _DRAW_ORDER:
        sub = data[data["category"] == level]
        if len(sub):
            ax.scatter(sub["lfc1"], sub["lfc2"], c=colors[level], label=f"{names[level]} ({len(sub)})", **style)
    if len(data):
        lo = float(min(data["lfc1"].min(), data["lfc2"].min()))
        hi = float(max(data["lfc1"].max(), data["lfc2"].max()))
        ax.plot([lo, hi], [lo, hi], color="0.45", linewidth=0.8, linestyle="--", label="identity", zorder=3)
        slope, intercept = float(summary["slope"]), float(summary["intercept"])
        if fit_line and np.isfinite(slope) and np.isfinite(intercept):
            x0, x1 = float(data["lfc1"].min()), float(data["lfc1"].max())
            ax.plot(
                [x0, x1],
                [intercept + slope * x0, intercept + slope * x1],
                color="black",
                linewidth=1.0,
                label=f"least squares (slope {slope:.2f})",
                zorder=3,
            )
        _legend(ax)
    ax.axhline(0.0, color="0.7", linewidth=0.5, zorder=0)
    ax.axvline(0.0, color="0.7", linewidth=0.5, zorder=0)
    ax.set_xlabel(f"log2 fold change ({name1})")
    ax.set_ylabel(f"log2 fold change ({name2})")
    contrast = contrast_label(adata, key1)
    ax.set_title(
        f"{name1} vs {name2}" + (f": {contrast}" if contrast else "") + "\n"
        f"Pearson r = {float(summary['pearson']):.3f}, Spearman rho = {float(summary['spearman']):.3f}\n"
        f"slope = {float(summary['slope']):.3f}, call agreement = {float(summary['agreement']):.3f} "
        f"(n = {int(summary['n_both_finite'])})",
        fontsize="medium",
    )
    finish(ax, show=show, save=save)
    return ax


# -------------------------------------------------------------------------------------------------- NA genes


def _na_genes_data(adata: AnnData, key: str, *, split_reason: bool = True) -> pd.DataFrame:
    """key2's estimates for the genes it has a finite log2FC for, grouped by whether key1 tested them.

    Columns: ``group`` (ordered categorical: ``f"tested by {name1}"``, then ``f"NA in {name1}"`` or, with
    ``split_reason`` and a ``na_reason`` column in ``varm[key1]``, one group per reason such as
    ``"NA in DESeq2: cooks_outlier"``; ``name1`` is key1's method, e.g. ``"DESeq2"``; empty groups are
    dropped), ``lfc2`` and, when ``varm[key2]`` has ``lfc_lower``/``lfc_upper``, ``width`` (the credible
    interval's width).
    """
    record = compare_record(adata, key)
    key1, key2 = _keys(record)
    name1, _name2 = _names(adata, record)
    table = record["table"]
    lfc2 = numeric(table, "lfc2")
    finite1 = table["finite1"].to_numpy(dtype=bool)
    keep = np.isfinite(lfc2)
    tested = f"tested by {name1}"
    groups = np.where(finite1, tested, f"NA in {name1}").astype(object)
    t1 = adata.varm[key1] if key1 in adata.varm else None
    if split_reason and isinstance(t1, pd.DataFrame) and "na_reason" in t1.columns:
        reason = t1["na_reason"].reindex(table.index).fillna("").astype(str).to_numpy()
        named = ~finite1 & (reason != "")
        groups[named] = np.char.add(f"NA in {name1}: ", reason[named].astype(str))
    data = pd.DataFrame({"group": groups[keep], "lfc2": lfc2[keep]}, index=table.index[keep])
    t2 = adata.varm[key2] if key2 in adata.varm else None
    if isinstance(t2, pd.DataFrame) and {"lfc_lower", "lfc_upper"} <= set(t2.columns):
        lower = pd.to_numeric(t2["lfc_lower"], errors="coerce").reindex(table.index).to_numpy(dtype=np.float64)
        upper = pd.to_numeric(t2["lfc_upper"], errors="coerce").reindex(table.index).to_numpy(dtype=np.float64)
        data["width"] = (upper - lower)[keep]
    levels = [tested] + sorted(g for g in set(data["group"]) if g != tested)
    levels = [g for g in levels if (data["group"] == g).any()]
    data["group"] = pd.Categorical(data["group"], categories=levels, ordered=True)
    return data


def _tick_label(group: str, n: int) -> str:
    """A narrow x tick label: the group wrapped at 14 characters, the reason without underscores, then n."""
    head, _, reason = group.partition(": ")
    lines = textwrap.wrap(head + (":" if reason else ""), 14, break_long_words=False)
    lines += textwrap.wrap(reason.replace("_", " "), 14, break_long_words=False)
    return "\n".join([*lines, f"(n = {n})"])


def _box_strip(ax: Axes, data: pd.DataFrame, column: str, *, point_size: float, seed: int = 0) -> None:
    """Boxes (no fliers) with every gene drawn as a jittered point on top, one position per group."""
    levels = list(data["group"].cat.categories)
    values = [data.loc[data["group"] == g, column].dropna().to_numpy() for g in levels]
    positions = np.arange(1, len(levels) + 1)
    ax.boxplot(values, positions=positions, widths=0.5, showfliers=False, manage_ticks=False, zorder=1)
    rng = np.random.default_rng(seed)
    for pos, vals in zip(positions, values, strict=True):
        if vals.size:
            jitter = rng.uniform(-0.18, 0.18, size=vals.size)
            ax.scatter(pos + jitter, vals, s=point_size, alpha=0.5, linewidths=0, color="#4c72b0", zorder=2)
    ax.set_xticks(positions, labels=[_tick_label(g, v.size) for g, v in zip(levels, values, strict=True)])
    ax.tick_params(axis="x", labelsize="small")


def na_genes(
    adata: AnnData,
    key: str,
    *,
    split_reason: bool = True,
    show_width: bool | None = None,
    point_size: float = 4.0,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
) -> Axes | Figure:
    """Distribution of key2's log2FC for the genes key1 tested and those it left NA (box + points).

    With DESeq2 as key1 and a generative result as key2 this shows what the model says about the genes
    DESeq2 gives no call for (Cook's outliers, independent filtering). When ``varm[key2]`` holds credible
    intervals (``lfc_lower``/``lfc_upper``) a second panel shows their widths: honest uncertainty means
    wider intervals for the NA genes.

    Parameters
    ----------
    adata
        AnnData holding the comparison written by :func:`gendex.tl.compare_de`.
    key
        The comparison's ``key_added``.
    split_reason
        Split key1's NA genes by ``varm[key1]["na_reason"]`` when that column exists.
    show_width
        Draw the interval-width panel; None draws it when the intervals exist.
    point_size
        Marker size of the per-gene points.
    ax
        Axes to draw into (two Axes when the width panel is drawn); a new figure is created when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter.
    save
        Full path to save the figure to.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`, or the :class:`~matplotlib.figure.Figure` when two panels are drawn.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.pl.na_genes(adata, "compare_deseq2_vs_nbvae_de")  # doctest: +SKIP
    """
    data = _na_genes_data(adata, key, split_reason=split_reason)
    record = compare_record(adata, key)
    key1, key2 = _keys(record)
    name1, name2 = _names(adata, record)
    has_width = "width" in data.columns
    if show_width is None:
        show_width = has_width
    if show_width and not has_width:
        raise KeyError(f"`adata.varm[{key2!r}]` has no `lfc_lower`/`lfc_upper` columns; use `show_width=False`")
    none_na = list(data["group"].cat.categories) == [f"tested by {name1}"]
    n_panels = 2 if show_width and not none_na else 1
    given = given_axes(ax)
    if given is not None and len(given) != (2 if show_width else 1):
        raise ValueError(
            f"`ax` must hold {2 if show_width else 1} Axes here (show_width={show_width}), got {len(given)}"
        )
    if none_na:  # one box over every gene would say nothing: say it in words
        target = get_ax(None if given is None else given[0], figsize=(5.0, 1.8))
        for extra in (given or [])[1:]:
            extra.set_axis_off()
        target.set_axis_off()
        target.text(
            0.5,
            0.5,
            f"no NA genes: {name1} tested all {len(data):,} genes\nthat {name2} estimated",
            ha="center",
            va="center",
            transform=target.transAxes,
        )
        target.set_title(f"{name2} estimates of the genes {name1} left NA", fontsize="medium")
        finish(target, show=show, save=save)
        return target
    if given is None:
        import matplotlib.pyplot as plt

        width = max(3.5, 1.1 * data["group"].cat.categories.size + 1.0)
        fig, grid = plt.subplots(1, n_panels, figsize=(width * n_panels, 4.0), squeeze=False, layout="constrained")
        axes = list(grid[0])
    else:
        axes = given
        fig = root_figure(axes[0])
    _box_strip(axes[0], data, "lfc2", point_size=point_size)
    axes[0].axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
    axes[0].set_ylabel(f"log2 fold change ({name2})")
    axes[0].set_title(f"{name2} estimates\nby {name1} status", fontsize="medium")  # two lines: side by side
    if show_width:
        _box_strip(axes[1], data, "width", point_size=point_size)
        params = adata.uns.get(key2, {}).get("params", {}) if isinstance(adata.uns.get(key2), dict) else {}
        level = params.get("ci_level") if isinstance(params, dict) else None
        what = f"{100 * float(level):g}% credible interval" if level is not None else "credible interval"
        axes[1].set_ylabel(f"{what} width (log2 fold change)")
        axes[1].set_title(f"{name2} uncertainty\nby {name1} status", fontsize="medium")
    finish(fig if n_panels == 2 else axes[0], show=show, save=save)
    return fig if n_panels == 2 else axes[0]
