"""Sample embedding plots: ``pl.mds`` and ``pl.pca`` read what ``tl.mds``/``tl.pca`` stored."""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._colors import sample_colors
from ._utils import finish, get_ax

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _embedding_data(
    adata: AnnData,
    *,
    key: str,
    tool: str,
    dims: tuple[int, int],
    color: str | None,
    labels: bool | str,
    axis_format: str,
) -> tuple[pd.DataFrame, tuple[str, str]]:
    """Coordinates of two stored dimensions (1-based ``dims``) per sample, with axis labels giving % variance."""
    if key not in adata.obsm:
        raise KeyError(
            f"`adata.obsm[{key!r}]` not found (run `gdx.tl.{tool}(adata)` first); available: {list(adata.obsm)}"
        )
    uns_key = key.removeprefix("X_") or key
    rec = adata.uns.get(uns_key)
    if not isinstance(rec, dict) or "variance_ratio" not in rec:
        raise KeyError(f"`adata.uns[{uns_key!r}]['variance_ratio']` not found; run `gdx.tl.{tool}(adata)` again")
    coords = np.asarray(adata.obsm[key])
    n_dims = coords.shape[1]
    if len(dims) != 2 or not all(isinstance(d, int | np.integer) and 1 <= d <= n_dims for d in dims):
        raise ValueError(
            f"`dims` must be two dimensions in 1..{n_dims} (the number stored by `gdx.tl.{tool}`), got {dims!r}"
        )
    df = pd.DataFrame(
        {"x": coords[:, dims[0] - 1], "y": coords[:, dims[1] - 1]},
        index=adata.obs_names.copy(),
    )
    for col in [c for c in (color, labels if isinstance(labels, str) else None) if c is not None]:
        if col not in adata.obs.columns:
            raise KeyError(f"`adata.obs[{col!r}]` not found; available columns: {list(adata.obs.columns)}")
        df[col] = adata.obs[col].to_numpy()
    if labels is True:
        df["label"] = adata.obs_names.astype(str)
    elif isinstance(labels, str):
        df["label"] = adata.obs[labels].astype(str).to_numpy()
    ratio = np.asarray(rec["variance_ratio"], dtype=np.float64)
    xl, yl = (f"{axis_format.format(d=d)} ({round(100 * ratio[d - 1])}%)" for d in dims)
    return df, (xl, yl)


def _mds_data(
    adata: AnnData,
    *,
    key: str = "X_mds",
    dims: tuple[int, int] = (1, 2),
    color: str | None = None,
    labels: bool | str = False,
) -> tuple[pd.DataFrame, tuple[str, str]]:
    """MDS coordinates per sample (columns ``x``, ``y``, the ``color`` column, ``label``) and axis labels."""
    name = str(adata.uns.get(key.removeprefix("X_") or key, {}).get("axis_label", "Leading logFC dim"))
    return _embedding_data(adata, key=key, tool="mds", dims=dims, color=color, labels=labels, axis_format=name + " {d}")


def _pca_data(
    adata: AnnData,
    *,
    key: str = "X_pca",
    dims: tuple[int, int] = (1, 2),
    color: str | None = None,
    labels: bool | str = False,
) -> tuple[pd.DataFrame, tuple[str, str]]:
    """PCA scores per sample (columns ``x``, ``y``, the ``color`` column, ``label``) and axis labels ``PC1 (..%)``."""
    return _embedding_data(adata, key=key, tool="pca", dims=dims, color=color, labels=labels, axis_format="PC{d}")


def _draw(
    adata: AnnData,
    df: pd.DataFrame,
    axis_labels: tuple[str, str],
    *,
    color: str | None,
    title: str,
    ax: Axes | None,
    scatter_kwargs: dict[str, Any],
) -> Axes:
    spec = sample_colors(adata, color)
    ax = get_ax(ax, figsize=(5.5 if color is not None else 4.5, 4.5))
    kwargs = {"s": 50, "edgecolors": "white", "linewidths": 0.5, **scatter_kwargs}
    colors = np.array(spec.colors)
    if spec.categories:
        values = df[color].astype(str).where(df[color].notna(), None).to_numpy()
        for level, rgba in spec.categories.items():
            mask = values == level
            ax.scatter(df["x"][mask], df["y"][mask], color=[rgba], label=level, **kwargs)
        missing = pd.isna(df[color]).to_numpy()
        if missing.any():
            ax.scatter(df["x"][missing], df["y"][missing], color=colors[missing], label="NA", **kwargs)
    else:
        ax.scatter(df["x"], df["y"], color=colors, **kwargs)
    if "label" in df.columns:
        for (x, y), text in zip(df[["x", "y"]].to_numpy(), df["label"], strict=True):
            ax.annotate(text, (x, y), xytext=(3, 3), textcoords="offset points", fontsize="small")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    spec.add_legend(ax, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def mds(
    adata: AnnData,
    *,
    color: str | None = None,
    key: str = "X_mds",
    dims: tuple[int, int] = (1, 2),
    labels: bool | str = False,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """MDS plot of the samples (limma's ``plotMDS``) from :func:`gendex.tl.mds`.

    Distances on the plot approximate the typical (root-mean-square leading) log2 fold changes between
    samples; the axes show each dimension's share of the variance.

    Parameters
    ----------
    adata
        AnnData with ``obsm[key]`` and ``uns[key without "X_"]`` written by :func:`gendex.tl.mds`.
    color
        ``obs`` column to colour the samples by (categorical: a legend; numeric: a colour bar).
    key
        ``obsm`` key of the coordinates (``key_added`` of :func:`gendex.tl.mds`).
    dims
        The two dimensions to plot, 1-based as in limma's ``dim.plot``.
    labels
        Label the points: True with ``obs_names``, a string with that ``obs`` column.
    ax
        Axes to draw into; a new figure when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter's inline backend.
    save
        Full path to save the figure to.
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter`.

    Returns
    -------
    The Axes; the axis labels read ``Leading logFC dim 1 (45%)``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300)
    >>> gdx.pp.log_cpm(adata)
    >>> gdx.tl.mds(adata)
    >>> ax = gdx.pl.mds(adata, color="condition")
    """
    df, axis_labels = _mds_data(adata, key=key, dims=dims, color=color, labels=labels)
    ax = _draw(adata, df, axis_labels, color=color, title="MDS", ax=ax, scatter_kwargs=scatter_kwargs)
    finish(ax, show=show, save=save)
    return ax


def pca(
    adata: AnnData,
    *,
    color: str | None = None,
    key: str = "X_pca",
    dims: tuple[int, int] = (1, 2),
    labels: bool | str = False,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | PathLike | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """PCA plot of the samples from :func:`gendex.tl.pca`.

    Parameters
    ----------
    adata
        AnnData with ``obsm[key]`` and ``uns[key without "X_"]`` written by :func:`gendex.tl.pca`.
    color
        ``obs`` column to colour the samples by (categorical: a legend; numeric: a colour bar).
    key
        ``obsm`` key of the scores (``key_added`` of :func:`gendex.tl.pca`).
    dims
        The two components to plot, 1-based.
    labels
        Label the points: True with ``obs_names``, a string with that ``obs`` column.
    ax
        Axes to draw into; a new figure when None.
    show
        Call ``plt.show()`` when True; None leaves display to Jupyter's inline backend.
    save
        Full path to save the figure to.
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter`.

    Returns
    -------
    The Axes; the axis labels read ``PC1 (45%)``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300)
    >>> gdx.pp.log_cpm(adata)
    >>> gdx.tl.pca(adata)
    >>> ax = gdx.pl.pca(adata, color="condition", dims=(1, 3))
    """
    df, axis_labels = _pca_data(adata, key=key, dims=dims, color=color, labels=labels)
    ax = _draw(adata, df, axis_labels, color=color, title="PCA", ax=ax, scatter_kwargs=scatter_kwargs)
    finish(ax, show=show, save=save)
    return ax
