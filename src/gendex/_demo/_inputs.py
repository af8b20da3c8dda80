"""Read and check every input of ``gendex demo`` before the first step: one clear line per problem.

:func:`prepare` loads the data (a user's table, GSE60450 or a simulation), checks ``--design``, ``--group``,
``--contrast``, ``--gene-sets`` and ``--gene-symbols`` against it and returns the :class:`~gendex._demo.Demo`
state the steps run on. Every problem raises :class:`InputError` (the CLI prints it and exits with status 2)
before anything is written.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ._state import Demo

if TYPE_CHECKING:
    from anndata import AnnData

#: The file the demo writes last; a folder holding it is a previous demo's and may be replaced.
REPORT = "report.md"


class InputError(ValueError):
    """A bad command-line input, with a one-line message that names the option and the way out."""


def check_out(out: Path) -> None:
    """``--out`` must be a new folder, an empty one or a previous demo's (replaced when the run succeeds)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is an existing file; give the name of a folder to write the report into")
    if out.is_dir() and any(out.iterdir()) and not (out / REPORT).is_file():
        raise InputError(
            f"--out {str(out)!r} is a folder with files that are not a gendex report; give a new or empty folder "
            "(a previous demo's folder, with its report.md, is replaced when the run succeeds)"
        )
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise InputError(f"--out {str(out)!r}: cannot write into {str(ancestor)!r}")


def _check_file(option: str, path: Path | None) -> None:
    if path is not None and not path.is_file():
        raise InputError(f"{option} {str(path)!r}: no such file")


def _message(err: BaseException) -> str:
    """An exception's message on one line (a ``KeyError``'s without its quotes)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(text).split())


def _load(demo: Demo) -> None:
    import gendex as gdx

    args = demo.args
    if args.counts is not None:
        try:
            demo.adata = gdx.io.read_counts(args.counts, sample_sheet=args.samples)
        except (ValueError, KeyError, OSError, UnicodeDecodeError) as err:
            raise InputError(f"--counts/--samples: {_message(err)}") from None
        demo.dataset = f"`{args.counts}` with sample sheet `{args.samples}`"
    elif args.gse60450 is not None:
        try:
            demo.adata = gdx.datasets.gse60450(args.gse60450 or None)
        except (ValueError, KeyError, OSError) as err:
            raise InputError(f"--gse60450: {_message(err)}") from None
        demo.dataset = "GSE60450 (Fu et al. 2015): mouse mammary basal and luminal cells, virgin/pregnant/lactating"
        demo.design, demo.group, demo.color = "~celltype + status", "celltype", "group"
    else:
        try:
            demo.adata = gdx.datasets.simulate_counts(
                n_samples=args.n_samples, n_genes=args.n_genes, random_state=args.seed
            )
        except ValueError as err:
            raise InputError(f"--n-samples/--n-genes: {_message(err)}") from None
        demo.n_true_de = int(demo.data.var["is_de"].sum())
        demo.dataset = (
            f"simulated negative-binomial counts (`gdx.datasets.simulate_counts`, seed {args.seed}); "
            f"{demo.n_true_de:,} genes truly differentially expressed between conditions A and B"
        )
    if args.design is not None:
        demo.design = args.design


def _last_factor(design: str) -> str | None:
    """The variable of the design's last term (DESeq2's convention: the variable of interest), if it is one."""
    from formulaic import Formula

    terms = [t for t in Formula(design) if str(t) != "1"]
    factors = [str(f) for f in terms[-1].factors] if terms else []
    return factors[0] if len(factors) == 1 else None


def _check_design(demo: Demo) -> list[str]:
    """The design's ``obs`` columns; the design must parse, name existing columns and be estimable."""
    from .._design import design_factors, design_matrix

    adata = demo.data
    try:
        factors = design_factors(adata.obs, demo.design)
        design_matrix(adata.obs, demo.design)
    except (ValueError, KeyError) as err:
        raise InputError(f"--design {demo.design!r}: {_message(err)}") from None
    return factors


def _levels(adata: AnnData, column: str) -> list[str]:
    col = adata.obs[column]
    levels = [str(x) for x in col.cat.categories] if hasattr(col, "cat") else sorted(col.dropna().astype(str).unique())
    present = set(col.dropna().astype(str))
    return [lev for lev in levels if lev in present]


def _numeric(adata: AnnData, column: str) -> bool:
    import pandas as pd

    col = adata.obs[column]
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _check_group(demo: Demo, factors: list[str]) -> None:
    adata, args = demo.data, demo.args
    if args.group is not None:
        if args.group not in adata.obs.columns:
            raise InputError(
                f"--group {args.group!r} is not a column of the sample sheet; columns: {list(adata.obs.columns)}"
            )
        demo.group = demo.color = args.group
    elif args.counts is not None or (args.design is not None and args.gse60450 is None):
        factor = _last_factor(demo.design)
        if factor is None or factor not in factors or _numeric(adata, factor):
            what = "is not a single column" if factor is None or factor not in factors else f"{factor!r} is numeric"
            raise InputError(
                f"--design {demo.design!r}: its last term {what}, so it cannot give the groups; "
                "name the groups' column with --group"
            )
        demo.group = demo.color = factor
    levels = _levels(adata, demo.group)
    if len(levels) < 2:
        option = "--group" if args.group is not None else f"--design {demo.design!r} (its last term)"
        raise InputError(f"{option}: `{demo.group}` has fewer than two groups ({levels}); nothing to compare")


def _check_contrast(demo: Demo, factors: list[str]) -> None:
    adata, requested = demo.data, demo.args.contrast
    if requested is None:
        levels = _levels(adata, demo.group)
        demo.contrast = [demo.group, levels[-1], levels[0]]
        if _numeric(adata, demo.group):
            raise InputError(f"--group {demo.group!r} is numeric; name a column of categorical groups")
        if demo.group not in factors:
            raise InputError(
                f"the groups' column {demo.group!r} is not in the design {demo.design!r}, so the DE methods cannot "
                "compare its levels; add it to --design or give --contrast FACTOR TEST REF"
            )
        return
    factor, test, ref = (str(x) for x in requested)
    if factor not in factors:
        raise InputError(
            f"--contrast: the factor {factor!r} is not in the design {demo.design!r} (its columns: {factors}); "
            "add it to --design or compare a factor of the design"
        )
    if _numeric(adata, factor):
        raise InputError(f"--contrast: the factor {factor!r} is numeric; compare two levels of a categorical factor")
    levels = _levels(adata, factor)
    missing = [lev for lev in (test, ref) if lev not in levels]
    if missing:
        raise InputError(f"--contrast: no level {missing[0]!r} in `{factor}`; its levels: {levels}")
    if test == ref:
        raise InputError(f"--contrast: compares {test!r} with itself; give two different levels of `{factor}`")
    demo.contrast = [factor, test, ref]


def _check_gene_symbols(demo: Demo) -> None:
    import gendex as gdx

    path = demo.args.gene_symbols
    if path is None:
        return
    try:
        gdx.pp.add_gene_symbols(demo.data, table=path)
    except (ValueError, KeyError, OSError, UnicodeDecodeError) as err:
        raise InputError(f"--gene-symbols {str(path)!r}: {_message(err)}") from None


def _check_gene_sets(demo: Demo) -> None:
    import gendex as gdx

    path = demo.args.gene_sets
    if path is None:
        return
    try:
        net = gdx.io.read_gmt(path)
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise InputError(f"--gene-sets {str(path)!r}: {_message(err)}") from None
    adata = demo.data
    targets = set(net["target"].astype(str))
    n_ids = len(targets & set(adata.var_names.astype(str)))
    n_symbols = len(targets & set(adata.var["symbol"].astype(str))) if "symbol" in adata.var.columns else 0
    if max(n_ids, n_symbols) == 0:
        hint = "" if "symbol" in adata.var.columns else "; if the sets use gene symbols, add --gene-symbols TABLE"
        raise InputError(
            f"--gene-sets {str(path)!r}: none of its {len(targets):,} genes is measured (matched by gene ID"
            f"{' or symbol' if 'symbol' in adata.var.columns else ''}){hint}"
        )
    demo.net, demo.net_by_symbol = net, n_symbols > n_ids


def check_args(args: argparse.Namespace) -> None:
    """The checks that need no data: ``--out`` and the input files exist."""
    check_out(Path(args.out))
    _check_file("--counts", args.counts)
    _check_file("--samples", args.samples)
    _check_file("--gene-sets", args.gene_sets)
    _check_file("--gene-symbols", args.gene_symbols)


def prepare(args: argparse.Namespace, out: Path) -> Demo:
    """Load the data and check every input against it; the :class:`Demo` the steps run on (nothing written)."""
    check_args(args)
    demo = Demo(args=args, out=out)
    _load(demo)
    factors = _check_design(demo)
    _check_group(demo, factors)
    _check_contrast(demo, factors)
    _check_gene_symbols(demo)
    _check_gene_sets(demo)
    return demo
