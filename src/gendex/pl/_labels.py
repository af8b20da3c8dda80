"""Private: short sample labels (one rule for every plot) and text placement that avoids collisions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

_SEPARATORS = re.compile(r"[_ ]")


def short_names(names: Sequence[str]) -> list[str]:
    """The shortest unique leading part of each sample name, cut at ``_`` or a space.

    ``MCL1-DG_BC2CTUACXX_ACTTGA_L002_R1`` becomes ``MCL1-DG`` when the first ``_``-separated field is
    already unique across the samples; otherwise more fields are kept, up to the full names. Names
    without a separator are kept as they are.
    """
    names = [str(n) for n in names]
    if len(set(names)) < len(names):
        return names
    parts = [_SEPARATORS.split(n) for n in names]
    depth = max((len(p) for p in parts), default=1)
    for k in range(1, depth + 1):
        heads = [
            n if len(p) <= k else n[: sum(len(x) + 1 for x in p[:k]) - 1] for n, p in zip(names, parts, strict=True)
        ]
        if len(set(heads)) == len(heads):
            return heads
    return names


def sample_labels(adata: AnnData, *, labels: bool | str | None = True) -> pd.Series | None:
    """Sample labels indexed by ``obs_names``: an ``obs`` column (``labels`` a str), short names (True) or None.

    Short names follow :func:`short_names`, so that every plot labels a sample the same way.
    """
    if labels is None or labels is False:
        return None
    if isinstance(labels, str):
        if labels not in adata.obs.columns:
            raise KeyError(f"`adata.obs[{labels!r}]` not found; available columns: {list(adata.obs.columns)}")
        return pd.Series(adata.obs[labels].astype(str).to_numpy(), index=adata.obs_names)
    if labels is True:
        return pd.Series(short_names(adata.obs_names), index=adata.obs_names)
    raise TypeError(f"`labels` must be True, False, None or an `obs` column name, got {labels!r}")


# ------------------------------------------------------------------------------------------------ placement

#: candidate placements of a label around its point: 16 directions at distances from 2 to 150 points
_ANGLES = np.deg2rad([45, -45, 135, -135, 90, -90, 0, 180, 22.5, -22.5, 157.5, -157.5, 67.5, -67.5, 112.5, -112.5])
_RADII = np.r_[1.0, 3.0, 6.0, np.arange(10.0, 151.0, 6.0)]  # points, from the point's edge
_NEAR = 8.0  # points: labels moved farther than this get a leader line


def _overlaps(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Total overlap area of each box (rows x0, y0, x1, y1) with the ``others``."""
    if others.size == 0:
        return np.zeros(len(boxes))
    w = np.minimum(boxes[:, None, 2], others[None, :, 2]) - np.maximum(boxes[:, None, 0], others[None, :, 0])
    h = np.minimum(boxes[:, None, 3], others[None, :, 3]) - np.maximum(boxes[:, None, 1], others[None, :, 1])
    return (np.clip(w, 0, None) * np.clip(h, 0, None)).sum(axis=1)


def _text_sizes(ax: Axes, texts: Sequence[str], fontsize: Any) -> np.ndarray:
    """Width and height (pixels) of each text at ``fontsize``, measured by the renderer when there is one."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.text import Text

    canvas = ax.figure.canvas
    renderer = canvas.get_renderer() if hasattr(canvas, "get_renderer") else None
    if renderer is None:
        size = FontProperties(size=fontsize).get_size_in_points() * ax.figure.dpi / 72.0
        return np.array([(0.62 * size * len(t), 1.25 * size) for t in texts], dtype=np.float64).reshape(-1, 2)
    out = []
    for t in texts:
        probe = Text(0, 0, t, fontsize=fontsize, figure=ax.figure)
        box = probe.get_window_extent(renderer)
        out.append((box.width, box.height))
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def place_labels(
    ax: Axes,
    x: Sequence[float],
    y: Sequence[float],
    texts: Sequence[str],
    *,
    fontsize: Any = "x-small",
    avoid_points: np.ndarray | None = None,
    marker_size: float = 20.0,
    gids: Sequence[str] | None = None,
) -> list:
    """Annotate each point with its text where the label stays inside the axes and overlaps no other label.

    A small deterministic repel step: for each point (in the given order, the most important first)
    candidate boxes are tried around it at growing distances (a grey leader line joins far ones); the first
    box inside the axes that overlaps no label placed before and no labelled point is kept, else the one
    overlapping least. Call it after the axes limits and layout are final (legends and colour bars added).
    ``avoid_points`` (data coordinates, n x 2) are further points a label should not cover; ``marker_size``
    is the points' ``s`` (area in points squared, as in ``Axes.scatter``). Returns the annotations.
    """
    texts = [str(t) for t in texts]
    if not texts:
        return []
    ax.autoscale_view()
    xy = np.column_stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])
    px = ax.transData.transform(xy)
    frame = ax.get_window_extent()
    sizes = _text_sizes(ax, texts, fontsize)
    scale = ax.figure.dpi / 72.0
    pad = 1.0 * scale
    dots = px if avoid_points is None else np.vstack([px, ax.transData.transform(np.asarray(avoid_points, float))])
    r_dot = (0.5 * float(np.sqrt(marker_size)) + 0.5) * scale
    dot_boxes = np.column_stack([dots - r_dot, dots + r_dot])
    radii = np.repeat(_RADII, len(_ANGLES)) * scale + r_dot
    cos = np.tile(np.cos(_ANGLES), len(_RADII))
    sin = np.tile(np.sin(_ANGLES), len(_RADII))
    placed = np.zeros((0, 4))
    out = []
    for i, (text, (w, h)) in enumerate(zip(texts, sizes, strict=True)):
        cx = px[i, 0] + cos * (radii + w / 2)  # box centres: the near edge at distance r from the point
        cy = px[i, 1] + sin * (radii + h / 2)
        boxes = np.column_stack([cx - w / 2 - pad, cy - h / 2 - pad, cx + w / 2 + pad, cy + h / 2 + pad])
        outside = (
            np.clip(frame.x0 - boxes[:, 0], 0, None)
            + np.clip(boxes[:, 2] - frame.x1, 0, None)
            + np.clip(frame.y0 - boxes[:, 1], 0, None)
            + np.clip(boxes[:, 3] - frame.y1, 0, None)
        )
        cost = 1e6 * outside + 1e3 * _overlaps(boxes, placed) + 5.0 * _overlaps(boxes, dot_boxes) + 0.5 * radii
        k = int(np.argmin(cost))
        placed = np.vstack([placed, boxes[k]])
        x0, y0 = cx[k] - w / 2, cy[k] - h / 2
        ann = ax.annotate(
            text,
            (float(xy[i, 0]), float(xy[i, 1])),
            xytext=((x0 - px[i, 0]) / scale, (y0 - px[i, 1]) / scale),
            textcoords="offset points",
            ha="left",
            va="bottom",
            fontsize=fontsize,
            arrowprops={"arrowstyle": "-", "linewidth": 0.4, "color": "0.4", "shrinkA": 1, "shrinkB": 2}
            if radii[k] - r_dot > _NEAR * scale
            else None,
            gid=None if gids is None else str(gids[i]),
            annotation_clip=False,
        )
        out.append(ann)
    return out
