"""What the demo's steps share: the :class:`Demo` state with its report sections, :class:`Step` and the logger."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

#: Significance level of the DE calls in the demo (``padj`` / q-value below it).
ALPHA = 0.05


@dataclass
class Demo:
    """The options, the AnnData, what the steps computed and what goes into the report.

    ``design`` is the design formula, ``group`` the ``obs`` column of the experimental groups (used by
    ``pp.filter_by_expr``), ``color`` the ``obs`` column the sample plots are coloured by and ``contrast`` the
    ``[factor, test, reference]`` every DE method tests; all are checked before the first step. ``net`` is the
    gene-set network read from ``--gene-sets`` and ``net_by_symbol`` whether its genes are symbols. ``results``
    maps the key of every DE result a step wrote to its display name (steps never guess keys), ``model`` is the
    trained NB-VAE and ``findings`` the one-line results repeated in the report's summary.
    """

    args: argparse.Namespace
    out: Path
    adata: AnnData | None = None
    dataset: str = ""
    design: str = "~condition"
    group: str = "condition"
    color: str = "condition"
    contrast: list[str] = field(default_factory=list)
    net: pd.DataFrame | None = None
    net_by_symbol: bool = False
    n_true_de: int | None = None
    unfiltered: AnnData | None = None
    model: Any = None
    latent_key: str | None = None
    results: dict[str, str] = field(default_factory=dict)
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    terminal: bool = False

    @property
    def data(self) -> AnnData:
        """The loaded AnnData: :func:`~gendex._demo._inputs.prepare` sets it before any check or step reads it."""
        if self.adata is None:
            raise RuntimeError("the demo's data is not loaded yet: prepare() loads it before any step runs")
        return self.adata

    def _lines(self) -> list[str]:
        if not self.sections:
            self.sections.append(("Data", []))
        return self.sections[-1][1]

    def note(self, text: str) -> None:
        """Add a paragraph to the report section of the current step."""
        self._lines().append(text)

    def finding(self, text: str) -> None:
        """Add a paragraph to the current section and repeat it in the report's summary."""
        self.note(text)
        self.findings.append(text)

    def figure(self, name: str, title: str, obj: Any) -> Path:
        """Save an Axes or Figure as ``<out>/<name>.png``, close it and link it in the report."""
        import matplotlib.pyplot as plt

        fig = obj if hasattr(obj, "savefig") else obj.figure
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        self._lines().append(f"![{title}]({path.name})")
        return path

    def table(self, name: str, title: str, df: pd.DataFrame) -> Path:
        """Write a DataFrame as ``<out>/<name>.csv`` and link it in the report."""
        path = self.out / f"{name}.csv"
        df.to_csv(path)
        self._lines().append(f"- [{title}]({path.name}) ({len(df):,} rows)")
        return path

    def markdown(self, df: pd.DataFrame, digits: int = 3) -> None:
        """Show a small DataFrame in the report as a Markdown table (index first, floats to ``digits``)."""
        import numbers

        def cell(value: Any) -> str:
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                return f"{value:,}"
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                return f"{value:.{digits}f}"
            return str(value).replace("|", "\\|")

        header = [str(df.index.name or ""), *map(str, df.columns)]
        rows = [[cell(i), *(cell(v) for v in row)] for i, row in zip(df.index, df.itertuples(index=False), strict=True)]
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] + ["---:"] * df.shape[1]) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        self._lines().append("\n".join(lines))


@dataclass(frozen=True)
class Step:
    """A titled step of the demo; ``run(demo)`` does the work and records figures/tables/notes.

    ``own_line``: the step may draw a progress bar of its own (in a terminal), so its progress line is finished
    before it starts and repeated when it ends.
    """

    title: str
    run: Callable[[Demo], None]
    own_line: bool = False


class Progress:
    """A step logger: ``[2/6] Quality control ... done (0.4 s)`` on ``stream`` (stderr), one line per step.

    It writes no carriage returns, so a log file reads as the terminal did.
    """

    def __init__(self, total: int, stream: TextIO | None = None):
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        self.start = time.perf_counter()
        self._current: tuple[int, str, bool] = (0, "", False)

    def step(self, i: int, title: str, *, own_line: bool = False) -> float:
        """Announce step ``i`` (on a line of its own with ``own_line``); return its start time."""
        self.stream.write(f"[{i}/{self.total}] {title} ..." + ("\n" if own_line else ""))
        self.stream.flush()
        self._current = (i, title, own_line)
        return time.perf_counter()

    def done(self, started: float) -> float:
        """Finish the line of the step started at ``started``; return its duration in seconds."""
        seconds = time.perf_counter() - started
        i, title, own_line = self._current
        prefix = f"[{i}/{self.total}] {title} ..." if own_line else ""
        self.stream.write(f"{prefix} done ({seconds:.1f} s)\n")
        self.stream.flush()
        return seconds

    def failed(self) -> None:
        """End the current step's line after an error (the message follows on its own line)."""
        self.stream.write(" failed\n")
        self.stream.flush()
