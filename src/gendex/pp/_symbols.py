"""``pp.add_gene_symbols``: map gene IDs (``var_names``) to symbols from an NCBI ``gene_info`` file or a table."""

from __future__ import annotations

import gzip
import logging
from os import PathLike
from pathlib import Path

import pandas as pd
from anndata import AnnData

logger = logging.getLogger(__name__)

#: First header field of NCBI ``gene_info`` files, and the columns used from them.
GENE_INFO_HEADER = "#tax_id"
GENE_INFO_COLUMNS = ("GeneID", "Symbol")
#: Values that mean "no symbol" (NCBI writes ``-`` for missing fields).
_MISSING = {"", "-", "nan", "NaN", "NA", "None"}


def _first_line(path: Path) -> str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return fh.readline()


def _load_table(table: str | PathLike | pd.DataFrame) -> tuple[pd.DataFrame, str, bool]:
    """Return the table (all columns as str), a description for ``uns``, and whether it is an NCBI gene_info."""
    if isinstance(table, pd.DataFrame):
        return table, "DataFrame", False
    if not isinstance(table, str | PathLike):
        raise TypeError(f"`table` must be a path or a DataFrame, got {type(table).__name__}")
    path = Path(table)
    if not path.is_file():
        raise FileNotFoundError(f"gene table not found: {path}")
    is_gene_info = _first_line(path).startswith(GENE_INFO_HEADER)
    name = path.name.lower().removesuffix(".gz")
    sep = "," if name.endswith(".csv") else "\t"
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, low_memory=False)
    return df, str(path), is_gene_info


def add_gene_symbols(
    adata: AnnData,
    *,
    table: str | PathLike | pd.DataFrame,
    from_col: str | None = None,
    to_col: str | None = None,
    key_added: str = "symbol",
    copy: bool = False,
) -> AnnData | None:
    """Add gene symbols to ``var`` by mapping ``var_names`` (e.g. Entrez IDs) through an annotation table.

    Parameters
    ----------
    adata
        AnnData whose ``var_names`` are gene identifiers.
    table
        An NCBI ``gene_info`` file (plain or ``.gz``; recognised by its ``#tax_id`` header and mapped
        ``GeneID`` -> ``Symbol``), any table file with a header row (tab-separated, or comma-separated when
        the name ends in ``.csv``; optionally gzipped) or a DataFrame.
    from_col
        Column holding the identifiers that match ``var_names``; by default ``GeneID`` for ``gene_info``
        files, else the first column.
    to_col
        Column holding the symbols; by default ``Symbol`` for ``gene_info`` files, else the second column.
    key_added
        Column of ``var`` to write.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Sets ``adata.var[key_added]`` (str): the symbol of each gene, or its ID when the table has no symbol for it
    (empty, ``-`` or absent), and ``adata.uns["add_gene_symbols"]`` = ``{"params", "n_mapped", "n_unmapped",
    "n_duplicated"}`` (``n_duplicated``: genes whose symbol is shared with another gene). When the table lists
    an identifier more than once, its first symbol is used. Returns None, or the modified copy when
    ``copy=True``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.gse60450("data/gse60450")  # doctest: +SKIP
    >>> gdx.pp.add_gene_symbols(adata, table="Mus_musculus.gene_info.gz")  # doctest: +SKIP
    >>> adata.uns["add_gene_symbols"]["n_mapped"]  # doctest: +SKIP
    25869
    """
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"`key_added` must be a non-empty string, got {key_added!r}")
    df, source, is_gene_info = _load_table(table)
    if df.shape[1] < 2 and (from_col is None or to_col is None):
        raise ValueError(f"the gene table needs at least two columns (ID and symbol); it has {list(df.columns)}")
    default_from, default_to = GENE_INFO_COLUMNS if is_gene_info else (df.columns[0], df.columns[1])
    from_col = default_from if from_col is None else from_col
    to_col = default_to if to_col is None else to_col
    for what, col in (("from_col", from_col), ("to_col", to_col)):
        if col not in df.columns:
            raise KeyError(f"`{what}={col!r}` is not a column of the gene table; columns: {list(df.columns)[:20]}")
    if from_col == to_col:
        raise ValueError(f"`from_col` and `to_col` are the same column ({from_col!r})")

    ids = df[from_col].astype(str).str.strip()
    symbols = df[to_col].astype(str).str.strip()
    keep = ~symbols.isin(_MISSING) & ~ids.isin(_MISSING)  # NaN in a DataFrame became 'nan'
    mapping = pd.Series(symbols[keep].to_numpy(), index=ids[keep].to_numpy())
    n_repeated = int(mapping.index.duplicated().sum())
    mapping = mapping[~mapping.index.duplicated(keep="first")]
    if n_repeated:
        logger.info("%d identifiers are listed more than once in the gene table; the first symbol is used", n_repeated)

    mapped = pd.Series(adata.var_names.astype(str), index=adata.var_names).map(mapping)
    is_mapped = mapped.notna().to_numpy()
    result = mapped.where(is_mapped, pd.Series(adata.var_names.astype(str), index=adata.var_names))
    n_duplicated = int(result[is_mapped].duplicated(keep=False).sum())

    if copy:
        adata = adata.copy()
    adata.var[key_added] = result.astype(str).to_numpy()
    adata.uns["add_gene_symbols"] = {
        "params": {"table": source, "from_col": str(from_col), "to_col": str(to_col), "key_added": key_added},
        "n_mapped": int(is_mapped.sum()),
        "n_unmapped": int((~is_mapped).sum()),
        "n_duplicated": n_duplicated,
    }
    logger.info(
        "mapped %d of %d genes to symbols (%d keep their ID)", is_mapped.sum(), adata.n_vars, (~is_mapped).sum()
    )
    return adata if copy else None
