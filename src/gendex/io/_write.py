"""Write DE results tables for a reader outside Python (CSV/TSV, optionally gzipped)."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import pandas as pd
from anndata import AnnData

#: Field separator by file suffix (after an optional ``.gz``).
_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".tab": "\t"}


def write_de(
    adata: AnnData,
    key: str,
    path: str | PathLike,
    *,
    gene_symbols: str | None = "symbol",
    sep: str | None = None,
) -> Path:
    """Write the DE table ``adata.varm[key]`` to a CSV or TSV file, gene IDs (and symbols) first.

    The table is the one :func:`gendex.get.de_results` returns: every column of the result, indexed by
    ``var_names`` (column ``gene``), with ``var[gene_symbols]`` in front when present. Genes a method did not
    test are written with empty fields (``NA`` in R's ``read.csv``). The file is written to a temporary name
    and renamed, so an interrupted write never leaves a truncated table.

    Parameters
    ----------
    adata
        AnnData holding a result written by a ``gdx.tl`` DE function.
    key
        The result's key (``varm[key]``).
    path
        Output file: ``.csv`` (comma), ``.tsv``/``.txt``/``.tab`` (tab), each optionally ending in ``.gz``.
    gene_symbols
        ``var`` column of gene symbols to include; ignored when absent, None to leave out.
    sep
        Field separator; None takes it from the suffix.

    Returns
    -------
    The path written.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.io.write_de(adata, "deseq2", "deseq2_results.csv")  # doctest: +SKIP
    """
    from .._results import lookup_de_table

    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    ext = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes and not gz else "")
    if sep is None:
        if ext not in _SEPARATORS:
            raise ValueError(
                f"cannot tell the format of {path.name!r} from its suffix; use .csv or .tsv (optionally .gz), "
                "or pass sep="
            )
        sep = _SEPARATORS[ext]
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder of {str(path)!r} does not exist; create it first")
    table: pd.DataFrame = lookup_de_table(adata, key).copy()
    if gene_symbols is not None and gene_symbols in adata.var.columns and gene_symbols not in table.columns:
        table.insert(0, gene_symbols, adata.var[gene_symbols].astype(str).to_numpy())
    table.index.name = "gene"
    partial = path.with_name(f".{path.name}.partial")
    try:
        table.to_csv(partial, sep=sep, compression="gzip" if gz else None)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path
