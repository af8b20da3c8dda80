"""Private: colours for samples from an ``obs`` column (categorical -> palette + legend, numeric -> colormap)."""

from __future__ import annotations

from collections.abc import Mapping
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


def distinct_colors(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct colours: ``tab10``, ``tab20``, else evenly spaced on ``turbo``."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, n)]


def _category_palette(levels: list[str], palette: Any) -> dict[str, tuple[float, float, float, float]]:
    """``palette`` (a colour-map name, a list, or a mapping level -> colour) as one RGBA colour per level."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba

    if isinstance(palette, Mapping):
        missing = [lv for lv in levels if lv not in palette]
        if missing:
            raise ValueError(f"`palette` has no colour for {missing}")
        return {lv: to_rgba(palette[lv]) for lv in levels}
    if isinstance(palette, str):
        if palette not in colormaps:
            raise ValueError(f"`palette` {palette!r} is not a matplotlib colour map name")
        cmap = colormaps[palette]
        n = getattr(cmap, "N", 256)
        return {lv: cmap(i % n if n < 256 else i / max(len(levels) - 1, 1)) for i, lv in enumerate(levels)}
    colors = list(palette)
    if len(colors) < len(levels):
        raise ValueError(f"`palette` has {len(colors)} colours for {len(levels)} categories")
    return {lv: to_rgba(c) for lv, c in zip(levels, colors, strict=False)}


def sample_colors(
    adata: AnnData, color: str | None, *, default: str = "C0", palette: Any = None, cmap: str = "viridis"
) -> SampleColors:
    """Colours of the samples of ``adata`` by ``adata.obs[color]``: the one colour resolver of ``pl``.

    Categorical (or string/bool) columns use ``palette`` when given (a colour-map name, a list, or a
    mapping category -> colour), else ``adata.uns[f"{color}_colors"]`` when it has one colour per category
    (scanpy's convention), else :func:`distinct_colors`; numeric columns use ``cmap``. Missing values are grey.
    ``color=None`` colours every sample ``default``.
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize, to_rgba

    if color is None:
        return SampleColors(colors=[to_rgba(default)] * adata.n_obs)
    if color not in adata.obs.columns:
        raise KeyError(f"`adata.obs[{color!r}]` not found; available columns: {list(adata.obs.columns)}")
    values = adata.obs[color]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        v = values.to_numpy(dtype=np.float64)
        finite = np.isfinite(v)
        lo, hi = (float(v[finite].min()), float(v[finite].max())) if finite.any() else (0.0, 1.0)
        norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)
        colormap = colormaps[cmap]
        colors = [colormap(norm(x)) if np.isfinite(x) else to_rgba(MISSING_COLOR) for x in v]
        return SampleColors(colors=colors, key=color, norm=norm, cmap=colormap)
    is_cat = isinstance(values.dtype, pd.CategoricalDtype)
    if is_cat:
        levels = [str(c) for c in values.cat.categories if (values == c).any()]
    else:
        levels = sorted(values.dropna().astype(str).unique().tolist())
    stored = adata.uns.get(f"{color}_colors")
    if palette is not None:
        categories = _category_palette(levels, palette)
    elif is_cat and stored is not None and len(stored) == len(values.cat.categories):
        lookup = {str(c): to_rgba(col) for c, col in zip(values.cat.categories, stored, strict=True)}
        categories = {level: lookup[level] for level in levels}
    else:
        categories = dict(zip(levels, distinct_colors(len(levels)), strict=True))
    colors = [to_rgba(MISSING_COLOR) if pd.isna(v) else categories[str(v)] for v in values]
    return SampleColors(colors=colors, key=color, categories=categories)
