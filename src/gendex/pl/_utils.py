"""Private plotting helpers shared by every ``pl`` function."""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def get_ax(ax: Axes | None, figsize: tuple[float, float] = (5.0, 4.0)) -> Axes:
    """Return ``ax``, or a new Axes on a new figure when ``ax`` is None (global rcParams are never touched)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _fig, ax = plt.subplots(figsize=figsize)
    return ax


def finish(obj: Axes | Figure, *, show: bool | None, save: str | PathLike | None) -> None:
    """Save to the full path ``save`` (if given) and show when ``show`` is True; None leaves it to Jupyter."""
    fig = obj if hasattr(obj, "savefig") else obj.figure
    if save is not None:
        fig.savefig(save, bbox_inches="tight")
    if show:
        import matplotlib.pyplot as plt

        plt.show()
