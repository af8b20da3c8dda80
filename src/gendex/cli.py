"""``gendex`` command line: ``gendex demo`` runs the workflow on example or user data and writes a report.

The demo is a thin script over the public API: an ordered list of small step functions (:data:`STEPS`),
each taking the :class:`Demo` state, calling ``gdx.pp``/``gdx.tl``/``gdx.pl`` and recording its figures,
tables and notes for ``report.md``. Adding a step is a few lines::

    def step_deseq2(demo: Demo) -> None:
        gdx.tl.deseq2(demo.adata, design=demo.design)
        demo.table("deseq2", "DESeq2 results", gdx.get.de_results(demo.adata, "deseq2"))
        demo.figure("volcano", "Volcano plot", gdx.pl.volcano(demo.adata, "deseq2"))


    STEPS.append(Step("DESeq2", step_deseq2))
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


# --- state shared by the steps --------------------------------------------------------------------


@dataclass
class Demo:
    """What the steps share: the options, the AnnData and what goes into the report.

    ``design`` is the design formula, ``group`` the ``obs`` column of the experimental groups (used by
    ``pp.filter_by_expr`` and the DE steps) and ``color`` the ``obs`` column the sample plots are coloured by.
    """

    args: argparse.Namespace
    out: Path
    adata: AnnData | None = None
    dataset: str = ""
    design: str = "~condition"
    group: str = "condition"
    color: str = "condition"
    unfiltered: AnnData | None = None
    sections: list[tuple[str, list[str]]] = field(default_factory=list)

    def _lines(self) -> list[str]:
        if not self.sections:
            self.sections.append(("Data", []))
        return self.sections[-1][1]

    def note(self, text: str) -> None:
        """Add a paragraph to the report section of the current step."""
        self._lines().append(text)

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


@dataclass(frozen=True)
class Step:
    """A titled step of the demo; ``run(demo)`` does the work and records figures/tables/notes."""

    title: str
    run: Callable[[Demo], None]


# --- the steps ------------------------------------------------------------------------------------


def _main_factor(design: str) -> str | None:
    """The last term of a design formula (DESeq2's convention: the variable of interest)."""
    rhs = design.split("~", 1)[-1]
    terms = [t.strip() for t in rhs.split("+") if t.strip() and t.strip() not in ("0", "1", "-1")]
    return terms[-1] if terms else None


def step_load(demo: Demo) -> None:
    """Read the user's table, GSE60450, or simulate counts."""
    import gendex as gdx

    args = demo.args
    if args.counts is not None:
        demo.adata = gdx.io.read_counts(args.counts, sample_sheet=args.samples)
        demo.dataset = f"`{args.counts}` with sample sheet `{args.samples}`"
        demo.design = args.design
        factor = args.group or _main_factor(args.design)
        if factor is None or factor not in demo.adata.obs.columns:
            raise KeyError(
                f"cannot take the groups from the design {args.design!r} (last term {factor!r} is not a column of "
                f"the sample sheet: {list(demo.adata.obs.columns)}); name one with --group"
            )
        demo.group = demo.color = factor
    elif args.gse60450 is not None:
        demo.adata = gdx.datasets.gse60450(args.gse60450 or None)
        demo.dataset = "GSE60450 (Fu et al. 2015): mouse mammary basal and luminal cells, virgin/pregnant/lactating"
        demo.design, demo.group, demo.color = args.design or "~celltype + status", "celltype", "group"
    else:
        demo.adata = gdx.datasets.simulate_counts(n_samples=args.n_samples, n_genes=args.n_genes, seed=args.seed)
        demo.dataset = (
            f"simulated negative-binomial counts (`gdx.datasets.simulate_counts`, seed {args.seed}); "
            f"{int(demo.adata.var['is_de'].sum())} genes truly differentially expressed between conditions A and B"
        )
        demo.design = args.design or "~condition"
    if args.group is not None:
        if args.group not in demo.adata.obs.columns:
            raise KeyError(f"--group {args.group!r} is not an `obs` column; available: {list(demo.adata.obs.columns)}")
        demo.group = demo.color = args.group
    demo.note(f"{demo.adata.n_obs} samples x {demo.adata.n_vars:,} genes: {demo.dataset}. Design `{demo.design}`.")


def step_qc(demo: Demo) -> None:
    """Library sizes and detected genes per sample."""
    import gendex as gdx

    adata = demo.adata
    gdx.pp.qc_metrics(adata)
    cols = ["library_size", "n_genes_detected", *dict.fromkeys([demo.group, demo.color])]
    demo.table("qc_metrics", "QC metrics per sample", adata.obs[cols])
    labels = "name" if "name" in adata.obs.columns else None
    demo.figure("library_sizes", "Library sizes", gdx.pl.library_sizes(adata, color=demo.color, labels=labels))
    lib = adata.obs["library_size"]
    demo.note(f"Library sizes range from {lib.min():,} to {lib.max():,} counts (median {lib.median():,.0f}).")


def step_filter(demo: Demo) -> None:
    """EdgeR's filterByExpr rule; log-CPM densities before and after."""
    import gendex as gdx

    adata = demo.adata
    gdx.pp.log_cpm(adata)
    demo.unfiltered = adata.copy()
    gdx.pp.filter_by_expr(adata, group=demo.group)
    gdx.pp.log_cpm(adata)
    rec = adata.uns["filter_by_expr"]
    demo.figure(
        "density_filter",
        "log-CPM densities before and after filtering",
        gdx.pl.density(adata, before=demo.unfiltered, color=demo.color),
    )
    demo.note(
        f"`pp.filter_by_expr(group={demo.group!r})` kept {rec['n_genes_kept']:,} of {rec['n_genes_before']:,} genes "
        f"(CPM cutoff {rec['cpm_cutoff']:.3g}, in at least {rec['min_sample_size']:g} samples)."
    )


def step_size_factors(demo: Demo) -> None:
    """DESeq2 median-of-ratios size factors."""
    import gendex as gdx

    adata = demo.adata
    gdx.pp.size_factors(adata)
    cols = ["size_factors", "library_size"] + [c for c in ("true_size_factor",) if c in adata.obs.columns]
    demo.table("size_factors", "DESeq2 size factors", adata.obs[cols])
    sf = adata.obs["size_factors"]
    demo.note(f"Size factors range from {sf.min():.3f} to {sf.max():.3f}.")


def step_mds(demo: Demo) -> None:
    """limma-style MDS on the leading log-fold-changes."""
    import gendex as gdx

    adata = demo.adata
    gdx.tl.mds(adata, top=500)
    labels = "name" if "name" in adata.obs.columns else adata.n_obs <= 24
    demo.figure("mds", "MDS (leading log-fold-changes)", gdx.pl.mds(adata, color=demo.color, labels=labels))
    ratio = adata.uns["mds"]["variance_ratio"]
    demo.note(f"Dimensions 1 and 2 explain {100 * ratio[0]:.0f}% and {100 * ratio[1]:.0f}% of the variance.")


def step_pca(demo: Demo) -> None:
    """PCA on log-CPM."""
    import gendex as gdx

    adata = demo.adata
    gdx.tl.pca(adata)
    demo.figure("pca", "PCA of log-CPM", gdx.pl.pca(adata, color=demo.color))
    ratio = adata.uns["pca"]["variance_ratio"]
    demo.note(f"PC1 and PC2 explain {100 * ratio[0]:.0f}% and {100 * ratio[1]:.0f}% of the variance.")


#: The demo's steps, in order; later workflow stages append theirs.
STEPS: list[Step] = [
    Step("Data", step_load),
    Step("Quality control", step_qc),
    Step("Filtering low-expression genes", step_filter),
    Step("Size factors", step_size_factors),
    Step("MDS", step_mds),
    Step("PCA", step_pca),
]


# --- running --------------------------------------------------------------------------------------


class Progress:
    """A step logger: ``[2/6] Quality control ... done (0.4 s)`` on ``stream`` (stderr)."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        self.start = time.perf_counter()

    def step(self, i: int, title: str) -> float:
        """Announce step ``i``; return its start time."""
        self.stream.write(f"[{i}/{self.total}] {title} ...")
        self.stream.flush()
        return time.perf_counter()

    def done(self, started: float) -> float:
        """Finish the line of the step started at ``started``; return its duration in seconds."""
        seconds = time.perf_counter() - started
        self.stream.write(f" done ({seconds:.1f} s)\n")
        self.stream.flush()
        return seconds


def write_report(demo: Demo, timings: list[tuple[str, float]], argv: Sequence[str]) -> Path:
    """Write ``report.md``: the data, one section per step with its notes, figures and tables, and timings."""
    import gendex as gdx

    lines = [
        "# gendex demo report",
        "",
        f"gendex {gdx.__version__}; command: `gendex {shlex.join(argv)}`",
        "",
    ]
    for title, body in demo.sections:
        lines += [f"## {title}", ""]
        for item in body:
            lines += [item, ""]
    lines += ["## Run time", "", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {title} | {seconds:.1f} |" for title, seconds in timings]
    lines += [f"| total | {sum(s for _, s in timings):.1f} |", ""]
    path = demo.out / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_demo(args: argparse.Namespace, argv: Sequence[str], *, stream: TextIO | None = None) -> Path:
    """Run :data:`STEPS` in order, save the AnnData as ``results.h5ad`` and write ``report.md``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = Demo(args=args, out=out)
    progress = Progress(len(STEPS) + 1, stream)
    timings = []
    for i, step in enumerate(STEPS, start=1):
        demo.sections.append((step.title, []))
        started = progress.step(i, step.title)
        step.run(demo)
        timings.append((step.title, progress.done(started)))
    started = progress.step(len(STEPS) + 1, "Saving results")
    h5ad = out / "results.h5ad"
    demo.adata.write_h5ad(h5ad)
    demo.sections.append(
        (
            "Results",
            [f"The AnnData with every result (obs, var, obsm, varm, uns, layers) is [{h5ad.name}]({h5ad.name})."],
        )
    )
    timings.append(("Saving results", progress.done(started)))
    report = write_report(demo, timings, argv)
    (sys.stderr if stream is None else stream).write(f"report: {report}\n")
    return report


def build_parser() -> argparse.ArgumentParser:
    """The ``gendex`` argument parser (``--version``; the ``demo`` subcommand)."""
    import gendex as gdx

    parser = argparse.ArgumentParser(prog="gendex", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gendex {gdx.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run QC, filtering, size factors, MDS and PCA and write figures, tables and report.md",
        description="Run the gendex workflow on simulated data (default), GSE60450 or your own counts, and write "
        "figures (PNG), tables (CSV), results.h5ad and report.md into --out.",
    )
    demo.add_argument("--out", default="gendex-demo", help="output folder (default: %(default)s)")
    data = demo.add_mutually_exclusive_group()
    data.add_argument("--counts", type=Path, help="gene x sample count table (TSV/CSV, featureCounts, GEO)")
    data.add_argument(
        "--gse60450",
        nargs="?",
        const="",
        metavar="PATH",
        help="run on GSE60450: a local copy (file or folder), else $GENDEX_DATA_DIR, else a cached GEO download",
    )
    demo.add_argument("--samples", type=Path, help="sample sheet (first column: sample names); needs --counts")
    demo.add_argument("--design", help='design formula over sample-sheet columns, e.g. "~batch + condition"')
    demo.add_argument("--group", help="obs column of the experimental groups (default: the design's last term)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated data (default: %(default)s)")
    demo.add_argument("--n-genes", type=int, default=5000, help=argparse.SUPPRESS)
    demo.add_argument("--n-samples", type=int, default=12, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gendex`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.counts is not None and (args.samples is None or args.design is None):
            parser.error("--counts needs --samples and --design")
        if args.counts is None and args.samples is not None:
            parser.error("--samples needs --counts")
        import matplotlib

        matplotlib.use("Agg")  # the demo only writes files
        try:
            run_demo(args, argv)
        except (ValueError, KeyError, FileNotFoundError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            sys.stderr.write(f"\ngendex demo: error: {message}\n")
            return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
