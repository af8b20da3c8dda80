"""QC plots: library sizes (from ``pp.qc_metrics``) and per-sample density of log-CPM (before/after a filter)."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._validation import get_matrix, to_dense
from ..stats._kde import bandwidth_nrd0, binned_kde
from ._colors import distinct_colors, sample_colors
from ._labels import sample_labels
from ._utils import finish, get_ax, given_axes, root_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


# --- library sizes --------------------------------------------------------------------------------


def _library_sizes_data(
    adata: AnnData, *, key: str = "library_size", color: str | None = None, labels: bool | str | None = True
) -> pd.DataFrame:
    """One row per sample (in ``obs`` order): ``library_size``, ``label`` and, when asked, the ``color`` column."""
    if key not in adata.obs.columns:
        hint = " (run `gdx.pp.qc_metrics(adata)` first)" if key == "library_size" else ""
        raise KeyError(f"`adata.obs[{key!r}]` not found{hint}; available columns: {list(adata.obs.columns)}")
    df = pd.DataFrame({"library_size": adata.obs[key].to_numpy(dtype=np.float64)}, index=adata.obs_names.copy())
    if color is not None and color not in adata.obs.columns:
        raise KeyError(f"`adata.obs[{color!r}]` not found; available columns: {list(adata.obs.columns)}")
    names = sample_labels(adata, labels=True if labels is None else labels)
    df["label"] = adata.obs_names.astype(str) if names is None else names.to_numpy()
    if color is not None:
        df[color] = adata.obs[color].to_numpy()
    return df


def library_sizes(
    adata: AnnData,
    key: str = "library_size",
    *,
    color: str | None = None,
    labels: bool | str | None = True,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **bar_kwargs: Any,
) -> Axes:
    """Bar chart of the library size (total count) of each sample.

    Parameters
    ----------
    adata
        AnnData with ``obs[key]``, written by :func:`gendex.pp.qc_metrics`.
    key
        ``obs`` column with the library sizes.
    color
        ``obs`` column to colour the bars by (categorical: a legend; numeric: a colour bar).
    labels
        The x tick labels: True (or None), short sample names (the rule every plot uses: ``MCL1-DG`` for
        ``MCL1-DG_BC2CTUACXX_ACTTGA_L002_R1``); a string, that ``obs`` column; False, the full ``obs_names``.
    ax
        Axes to draw into; a new figure when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter's inline backend.
    save
        Full path to save the figure to.
    **bar_kwargs
        Passed to :meth:`matplotlib.axes.Axes.bar`.

    Returns
    -------
    The Axes. The bar heights are in millions of counts when the largest library has a million counts or
    more, else in counts; the axis label says which.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300)
    >>> gdx.pp.qc_metrics(adata)
    >>> ax = gdx.pl.library_sizes(adata, color="condition")
    """
    df = _library_sizes_data(adata, key=key, color=color, labels=labels)
    spec = sample_colors(adata, color)
    scale, unit = (1e6, "millions of counts") if df["library_size"].max() >= 1e6 else (1.0, "counts")
    ax = get_ax(ax, figsize=(max(4.0, 0.35 * len(df) + 1.5), 4.0))
    kwargs = {"color": spec.colors, "edgecolor": "none", **bar_kwargs}
    ax.bar(np.arange(len(df)), df["library_size"].to_numpy() / scale, **kwargs)
    ax.set_xticks(np.arange(len(df)))
    ax.set_xticklabels(df["label"].tolist(), rotation=90)
    ax.set_xlabel("sample")
    ax.set_ylabel(f"library size ({unit})")
    ax.set_title("Library sizes")
    spec.add_legend(ax, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    finish(ax, show=show, save=save)
    return ax


# --- density --------------------------------------------------------------------------------------


def _layer_values(adata: AnnData, layer: str) -> np.ndarray:
    if layer not in adata.layers:
        hint = " (run `gdx.pp.log_cpm(adata)` first)" if layer == "log_cpm" else ""
        raise KeyError(f"`adata.layers[{layer!r}]` not found{hint}; available: {list(adata.layers)}")
    x = to_dense(get_matrix(adata, layer), dtype=np.float64)
    if not np.isfinite(x).any(axis=1).all():
        raise ValueError(f"`adata.layers[{layer!r}]` has a sample without a finite value")
    return x


def _density_data(
    adata: AnnData,
    *,
    layer: str = "log_cpm",
    color: str | None = None,
    grid: np.ndarray | None = None,
    n_points: int = 512,
) -> pd.DataFrame:
    """Long table of per-sample kernel densities: ``sample, x, density`` (and the ``color`` column).

    Each sample's finite values of ``layers[layer]`` are smoothed with a Gaussian kernel (R's default
    ``bw.nrd0`` bandwidth) on ``grid`` (by default ``n_points`` even steps over the data range, padded by
    three bandwidths).
    """
    x = _layer_values(adata, layer)
    if color is not None and color not in adata.obs.columns:
        raise KeyError(f"`adata.obs[{color!r}]` not found; available columns: {list(adata.obs.columns)}")
    rows = [v[np.isfinite(v)] for v in x]
    bws = [bandwidth_nrd0(v) for v in rows]
    if grid is None:
        lo = min(v.min() for v in rows) - 3 * max(bws)
        hi = max(v.max() for v in rows) + 3 * max(bws)
        grid = np.linspace(lo, hi, n_points)
    frames = []
    for name, values, bw in zip(adata.obs_names, rows, bws, strict=True):
        frame = pd.DataFrame({"sample": name, "x": grid, "density": binned_kde(values, grid, bw)})
        if color is not None:
            frame[color] = adata.obs.loc[name, color]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _common_grid(adatas: Sequence[AnnData], layer: str, n_points: int) -> np.ndarray:
    lo, hi, pad = np.inf, -np.inf, 0.0
    for a in adatas:
        x = _layer_values(a, layer)
        for v in x:
            v = v[np.isfinite(v)]
            lo, hi = min(lo, v.min()), max(hi, v.max())
            pad = max(pad, 3 * bandwidth_nrd0(v))
    return np.linspace(lo - pad, hi + pad, n_points)


def _cutoff(adata: AnnData, layer: str) -> float | None:
    """log2 of the CPM cutoff ``pp.filter_by_expr`` stored, when ``layer`` holds log-CPM (``pp.log_cpm``)."""
    rec = adata.uns.get("filter_by_expr")
    is_log_cpm = isinstance(adata.uns.get(layer), dict) and "prior_count" in adata.uns[layer]
    if isinstance(rec, dict) and "cpm_cutoff" in rec and is_log_cpm and rec["cpm_cutoff"] > 0:
        return float(np.log2(rec["cpm_cutoff"]))
    return None


def density(
    adata: AnnData,
    layer: str = "log_cpm",
    *,
    before: AnnData | None = None,
    color: str | None = None,
    show_cutoff: bool = True,
    n_points: int = 512,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **line_kwargs: Any,
) -> Axes | Figure:
    """Per-sample density of log-expression values; with ``before``, unfiltered and filtered side by side.

    The classic check of a low-expression filter (limma's RNA-seq workflow): before filtering, each sample
    has a peak of lowly expressed genes at small log-CPM; after, the curves are unimodal and alike.

    Parameters
    ----------
    adata
        AnnData with ``layers[layer]``, e.g. from :func:`gendex.pp.log_cpm` after a gene filter.
    layer
        Layer with the log-expression values.
    before
        The data before filtering (a copy taken before :func:`gendex.pp.filter_by_expr`, with the same
        ``layer``); drawn in a left panel, ``adata`` in a right one, on a shared x range.
    color
        ``obs`` column to colour the curves by; None gives each sample its own colour.
    show_cutoff
        Draw a dashed line at the log2 CPM cutoff stored by :func:`gendex.pp.filter_by_expr` in
        ``adata.uns["filter_by_expr"]`` (when ``layer`` holds log-CPM from :func:`gendex.pp.log_cpm`).
    n_points
        Points of the evaluation grid.
    ax
        Axes to draw into (two Axes when ``before`` is given); a new figure when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter's inline backend.
    save
        Full path to save the figure to.
    **line_kwargs
        Passed to :meth:`matplotlib.axes.Axes.plot`.

    Returns
    -------
    The Axes, or the two-panel :class:`~matplotlib.figure.Figure` when ``before`` is given (panels
    ``fig.axes[0]``: before, ``fig.axes[1]``: after).

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=500)
    >>> gdx.pp.log_cpm(adata)
    >>> raw = adata.copy()
    >>> gdx.pp.filter_by_expr(adata, group="condition")
    >>> gdx.pp.log_cpm(adata)
    >>> fig = gdx.pl.density(adata, before=raw)
    """
    panels = [adata] if before is None else [before, adata]
    grid = _common_grid(panels, layer, n_points)
    tables = [_density_data(a, layer=layer, color=color, grid=grid) for a in panels]
    given = given_axes(ax)
    if given is not None and len(given) != len(panels):
        raise TypeError(f"`ax` must be {'one Axes' if before is None else 'a pair of Axes (before, after)'}")
    axes: list[Axes]
    if given is not None:
        axes = given
    elif before is None:
        axes = [get_ax(None, figsize=(5.0, 4.0))]
    else:
        import matplotlib.pyplot as plt

        _fig, pair = plt.subplots(1, 2, figsize=(10.0, 4.0), sharex=True, sharey=True)
        axes = list(pair)
    # one colour per sample, the same in both panels
    names = list(dict.fromkeys(name for a in panels for name in a.obs_names))
    if color is None:
        by_sample = dict(zip(names, distinct_colors(len(names)), strict=True))
        spec = None
    else:
        spec = sample_colors(panels[-1], color)
        by_sample = {}
        for a in panels:
            s = sample_colors(a, color) if a is not panels[-1] else spec
            by_sample.update(zip(a.obs_names, s.colors, strict=True))
    xlabel = "log2 CPM" if isinstance(adata.uns.get(layer), dict) and "prior_count" in adata.uns[layer] else layer
    for i, (a, table, axis) in enumerate(zip(panels, tables, axes, strict=True)):
        for name, curve in table.groupby("sample", sort=False):
            axis.plot(curve["x"], curve["density"], color=by_sample[name], label=name, **{"lw": 1.0, **line_kwargs})
        cut = _cutoff(adata, layer) if show_cutoff else None
        if cut is not None:
            axis.axvline(cut, color="0.3", ls="--", lw=0.8)
        axis.set_xlabel(xlabel)
        axis.set_ylabel("density")
        stage = "" if before is None else ("before filtering: " if i == 0 else "after filtering: ")
        axis.set_title(f"{stage}{a.n_vars:,} genes")
    if spec is not None:
        spec.add_legend(axes[-1], loc="upper right", fontsize="small")
    if before is None:
        finish(axes[0], show=show, save=save)
        return axes[0]
    fig = root_figure(axes[0])
    finish(fig, show=show, save=save)
    return fig
