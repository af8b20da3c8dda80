"""Private: colours for samples from an ``obs`` column (categorical -> palette + legend, numeric -> colormap)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

#: colour of samples whose ``obs`` value is missing
MISSING_COLOR = "#bbbbbb"


@dataclass
class SampleColors:
    """One RGBA colour per sample, plus what the legend (categories) or a colour bar (numbers) needs."""

    colors: list[tuple[float, float, float, float]]
    key: str | None = None
    categories: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    norm: Any = None
    cmap: Any = None

    def add_legend(self, ax: Axes, **kwargs: Any) -> None:
        """Draw the legend (categories) or a colour bar (numeric values) for the colouring column."""
        if self.key is None:
            return
        if self.categories:
            from matplotlib.lines import Line2D

            handles = [
                Line2D([], [], marker="o", linestyle="", color=c, label=label) for label, c in self.categories.items()
            ]
            ax.legend(handles=handles, title=self.key, frameon=False, **kwargs)
        elif self.norm is not None:
            from matplotlib.cm import ScalarMappable

            ax.figure.colorbar(ScalarMappable(norm=self.norm, cmap=self.cmap), ax=ax, label=self.key)


def palette(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct colours: ``tab10``, ``tab20``, else evenly spaced on ``turbo``."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, n)]


def sample_colors(adata: AnnData, color: str | None, *, default: str = "C0") -> SampleColors:
    """Colours of the samples of ``adata`` by ``adata.obs[color]``.

    Categorical (or string/bool) columns use ``adata.uns[f"{color}_colors"]`` when it has one colour per
    category (scanpy's convention), else :func:`palette`; numeric columns use ``viridis``. Missing values
    are grey. ``color=None`` colours every sample ``default``.
    """
    from matplotlib.colors import Normalize, to_rgba

    if color is None:
        return SampleColors(colors=[to_rgba(default)] * adata.n_obs)
    if color not in adata.obs.columns:
        raise KeyError(f"`adata.obs[{color!r}]` not found; available columns: {list(adata.obs.columns)}")
    values = adata.obs[color]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        from matplotlib import colormaps

        v = values.to_numpy(dtype=np.float64)
        finite = np.isfinite(v)
        lo, hi = (float(v[finite].min()), float(v[finite].max())) if finite.any() else (0.0, 1.0)
        norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)
        cmap = colormaps["viridis"]
        colors = [cmap(norm(x)) if np.isfinite(x) else to_rgba(MISSING_COLOR) for x in v]
        return SampleColors(colors=colors, key=color, norm=norm, cmap=cmap)
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels = [str(c) for c in values.cat.categories if (values == c).any()]
    else:
        levels = sorted(values.dropna().astype(str).unique().tolist())
    stored = adata.uns.get(f"{color}_colors")
    is_cat = isinstance(values.dtype, pd.CategoricalDtype)
    if is_cat and stored is not None and len(stored) == len(values.cat.categories):
        lookup = {str(c): to_rgba(col) for c, col in zip(values.cat.categories, stored, strict=True)}
        categories = {level: lookup[level] for level in levels}
    else:
        categories = dict(zip(levels, palette(len(levels)), strict=True))
    colors = [to_rgba(MISSING_COLOR) if pd.isna(v) else categories[str(v)] for v in values]
    return SampleColors(colors=colors, key=color, categories=categories)
