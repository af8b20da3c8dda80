"""Private plotting helpers shared by every ``pl`` function."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure


def get_ax(ax: Axes | None, figsize: tuple[float, float] = (5.0, 4.0)) -> Axes:
    """Return ``ax``, or a new Axes on a new figure when ``ax`` is None (global rcParams are never touched)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _fig, ax = plt.subplots(figsize=figsize)
    return ax


def given_axes(ax: Axes | Sequence[Axes] | None) -> list[Axes] | None:
    """The Axes a caller passed as ``ax`` (one Axes, or a sequence or array of them) as a list; None stays None."""
    if ax is None:
        return None
    from matplotlib.axes import Axes

    if isinstance(ax, Axes):
        return [ax]
    import numpy as np

    return list(np.ravel(np.asarray(ax, dtype=object)))


def root_figure(obj: Axes | Figure | SubFigure) -> Figure:
    """The top-level Figure that an Axes, a sub-figure or a Figure is drawn on (the one that saves and shows)."""
    from matplotlib.figure import Figure

    while not isinstance(obj, Figure):
        obj = obj.figure
    return obj


def finish(obj: Axes | Figure, *, show: bool | None, save: str | PathLike | None) -> None:
    """Save to the full path ``save`` (if given) and show when ``show`` is True; None leaves it to Jupyter."""
    fig = root_figure(obj)
    if save is not None:
        fig.savefig(save, bbox_inches="tight")
    if show:
        import matplotlib.pyplot as plt

        plt.show()
