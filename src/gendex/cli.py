"""The gendex command line: gendex demo runs the workflow and writes figures, tables and a report.

A thin argparse shell over :mod:`gendex._demo` (the steps, the input checks and the report writer): usage
errors and bad inputs print one line and exit with status 2 before any work, a failed step exits with
status 1 and leaves no output folder behind.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._demo import STEPS, Demo, InputError, Step, run_demo

__all__ = ["STEPS", "Demo", "Step", "build_parser", "main"]

DESCRIPTION = "gendex: generative and classical differential expression for bulk RNA-seq."


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``gendex`` argument parser (``--version``; the ``demo`` subcommand) and its ``demo`` subparser."""
    import gendex as gdx

    parser = argparse.ArgumentParser(prog="gendex", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"gendex {gdx.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run QC, DESeq2, limma-voom, the NB-VAE and enrichment; write figures, tables and report.md",
        description="Run the gendex workflow on simulated data (default), GSE60450 or your own counts, and write "
        "figures (PNG), tables (CSV), results.h5ad and report.md into --out. Every input is checked before the "
        "first step; the output folder appears only when the run succeeds.",
    )
    demo.add_argument(
        "--out",
        default="gendex-demo",
        help="output folder: new, empty, or a previous demo's (replaced on success) (default: %(default)s)",
    )
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
    demo.add_argument("--group", help="sample-sheet column of the groups (default: the design's last term)")
    demo.add_argument(
        "--contrast",
        nargs=3,
        metavar=("FACTOR", "TEST", "REF"),
        help="what the DE methods compare, e.g. --contrast condition treated control (default: the last level of "
        "the groups vs the first)",
    )
    demo.add_argument("--gene-sets", type=Path, metavar="FILE.gmt", help="gene sets (GMT) for the enrichment step")
    demo.add_argument(
        "--gene-symbols",
        type=Path,
        metavar="TABLE",
        help="gene ID -> symbol table (NCBI gene_info or two columns) for plot labels and symbol GMTs",
    )
    demo.add_argument(
        "--epochs", type=int, metavar="N", help="NB-VAE training epochs (default: the model's, with early stopping)"
    )
    demo.add_argument("--no-nbvae", action="store_true", help="skip the NB-VAE and generative DE (the slowest steps)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated data (default: %(default)s)")
    demo.add_argument("--n-genes", type=int, default=5000, help=argparse.SUPPRESS)
    demo.add_argument("--n-samples", type=int, default=12, help=argparse.SUPPRESS)
    return parser, demo


def _usage_errors(args: argparse.Namespace) -> str | None:
    """Option combinations argparse cannot check, as one message (None when all is well)."""
    if args.counts is not None and (args.samples is None or args.design is None):
        return "--counts needs --samples and --design"
    if args.counts is None and args.samples is not None:
        return "--samples needs --counts"
    if args.epochs is not None and args.epochs < 1:
        return "--epochs must be at least 1"
    if args.n_genes < 10 or args.n_samples < 4:
        return "--n-genes must be at least 10 and --n-samples at least 4"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gendex`` console script; returns the exit status (2: bad usage or input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, demo_parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "demo":  # pragma: no cover - argparse allows only demo
        return 2
    problem = _usage_errors(args)
    if problem is not None:
        demo_parser.error(problem)  # prints `gendex demo`'s usage and exits with status 2
    import matplotlib

    matplotlib.use("Agg")  # the demo only writes files
    try:
        run_demo(args, argv, steps=STEPS)
    except InputError as err:
        sys.stderr.write(f"gendex demo: error: {err}\n")
        return 2
    except (ValueError, KeyError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        sys.stderr.write(f"gendex demo: error: {message}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("gendex demo: interrupted; nothing was written\n")
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
