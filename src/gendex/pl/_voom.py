"""voom's mean-variance trend, drawn from what :func:`gendex.tl.limma_voom` stored."""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._utils import finish, get_ax

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _voom_data(adata: AnnData, key: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-gene points (``sx``, ``sy``) and the lowess line (``x``, ``y``) stored by ``tl.limma_voom``."""
    record = adata.uns.get(key)
    if not isinstance(record, dict):
        raise KeyError(f"no limma-voom result `adata.uns[{key!r}]`; run `gdx.tl.limma_voom(adata, key_added={key!r})`")
    trend = record.get("voom")
    if not isinstance(trend, dict) or not {"sx", "sy", "trend_x", "trend_y"} <= set(trend):
        raise ValueError(f"`adata.uns[{key!r}]` holds no voom trend (is it a `tl.limma_voom` result?)")
    points = pd.DataFrame(
        {"sx": np.asarray(trend["sx"], dtype=np.float64), "sy": np.asarray(trend["sy"], dtype=np.float64)}
    )
    line = pd.DataFrame(
        {"x": np.asarray(trend["trend_x"], dtype=np.float64), "y": np.asarray(trend["trend_y"], dtype=np.float64)}
    )
    return points, line


def voom(
    adata: AnnData,
    key: str = "limma_voom",
    *,
    ax: Axes | None = None,
    line_color: str = "red",
    show: bool | None = None,
    save: str | PathLike | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """Mean-variance plot of voom: sqrt residual sd against mean log2 count, with the fitted lowess trend.

    Parameters
    ----------
    adata
        AnnData holding a :func:`gendex.tl.limma_voom` result.
    key
        The result's ``key_added``.
    ax
        Axes to draw into; a new figure when None.
    line_color
        Colour of the trend line.
    show
        Call ``plt.show()`` when True.
    save
        Full path to save the figure to.
    **scatter_kwargs
        Passed to :meth:`~matplotlib.axes.Axes.scatter` for the gene points.

    Returns
    -------
    The Axes.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=300, random_state=0)
    >>> gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    >>> ax = gdx.pl.voom(adata)
    """
    points, line = _voom_data(adata, key)
    ax = get_ax(ax)
    kwargs = {"s": 3, "color": "black", "alpha": 0.4, "linewidths": 0, "rasterized": True, **scatter_kwargs}
    ax.scatter(points["sx"], points["sy"], label="genes", **kwargs)
    ax.plot(line["x"], line["y"], color=line_color, linewidth=1.5, label="lowess trend")
    ax.set_xlabel("log2(count size + 0.5)")
    ax.set_ylabel("sqrt(standard deviation)")
    ax.set_title("limma-voom: mean-variance trend")
    finish(ax, show=show, save=save)
    return ax
