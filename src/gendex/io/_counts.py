"""Read gene x sample count tables (plain TSV/CSV, featureCounts, GEO genewise) into AnnData."""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .._validation import check_counts

logger = logging.getLogger(__name__)

#: featureCounts' annotation columns, in its output order.
FEATURECOUNTS_COLUMNS = ("Geneid", "Chr", "Start", "End", "Strand", "Length")
#: Columns that hold a gene length in the layouts we know.
_LENGTH_COLUMNS = ("Length", "length")


def _read_table(path: Path, sep: str | None) -> pd.DataFrame:
    if sep is None:
        name = path.name.lower().removesuffix(".gz").removesuffix(".bz2")
        sep = "," if name.endswith(".csv") else "\t"
    return pd.read_csv(path, sep=sep, comment="#", index_col=None, dtype={0: str}, low_memory=False)


def _read_sample_sheet(sample_sheet: str | PathLike | pd.DataFrame) -> pd.DataFrame:
    if isinstance(sample_sheet, pd.DataFrame):
        return sample_sheet.copy()
    path = Path(sample_sheet)
    sep = "," if path.name.lower().removesuffix(".gz").endswith(".csv") else "\t"
    sheet = pd.read_csv(path, sep=sep, dtype=str)
    return sheet.set_index(sheet.columns[0])


def join_sample_sheet(obs_names: pd.Index, sample_sheet: pd.DataFrame) -> pd.DataFrame:
    """Align a sample sheet to ``obs_names``; raise listing the samples it does not cover.

    String columns become categoricals (levels in order of first appearance in the sheet).
    """
    sheet = sample_sheet.copy()
    sheet.index = sheet.index.astype(str)
    if not sheet.index.is_unique:
        dups = sheet.index[sheet.index.duplicated()].unique().tolist()
        raise ValueError(f"the sample sheet lists these samples more than once: {dups}")
    missing = [s for s in obs_names if s not in sheet.index]
    if missing:
        extra = [s for s in sheet.index if s not in set(obs_names)]
        raise ValueError(
            f"the sample sheet does not cover {len(missing)} sample(s) of the count table: {missing}"
            + (f"; sheet rows not in the table: {extra}" if extra else "")
        )
    obs = sheet.loc[list(obs_names)].copy()
    for col in obs.columns:
        if obs[col].dtype == object or pd.api.types.is_string_dtype(obs[col]):
            levels = pd.unique(sheet[col].dropna().astype(str))
            obs[col] = pd.Categorical(obs[col].astype(str), categories=levels)
    obs.index.name = None
    return obs


def read_counts(
    path: str | PathLike,
    *,
    sample_sheet: str | PathLike | pd.DataFrame | None = None,
    sep: str | None = None,
    gene_column: str | None = None,
) -> AnnData:
    """Read a gene x sample count table into a samples x genes AnnData.

    Understands plain tables (first column = gene IDs, one column per sample), featureCounts output
    (``Geneid, Chr, Start, End, Strand, Length``, then samples; the ``#`` command line is skipped) and GEO
    genewise tables (``EntrezGeneID, Length``, then samples). Files may be gzipped. Annotation columns are
    dropped; a ``Length`` column is kept as ``var["length"]``.

    Parameters
    ----------
    path
        Path of the table (``.tsv``, ``.txt``, ``.csv``, optionally ``.gz``).
    sample_sheet
        A table (path or DataFrame indexed by sample name; a file's first column holds the names) joined into
        ``obs``. Its string columns become categoricals. Every sample of the count table must be listed.
    sep
        Field separator; guessed from the file name (``,`` for ``.csv``, else tab) when None.
    gene_column
        Column with the gene IDs; the first column when None.

    Returns
    -------
    AnnData with integer counts in ``X`` and in ``layers["counts"]``, gene IDs as ``var_names`` (str), the
    sample sheet in ``obs`` and the source in ``uns["read_counts"]``.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.io.read_counts("counts.tsv", sample_sheet="samples.tsv")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"count table not found: {path}")
    table = _read_table(path, sep)
    gene_column = table.columns[0] if gene_column is None else gene_column
    if gene_column not in table.columns:
        raise KeyError(f"gene column {gene_column!r} not in the table; columns: {list(table.columns)[:10]}")
    table[gene_column] = table[gene_column].astype(str)
    table = table.set_index(gene_column)
    table.index.name = None

    layout = "table"
    if all(c in table.columns for c in FEATURECOUNTS_COLUMNS[1:]):
        layout = "featureCounts"
        length = table["Length"]
        table = table.drop(columns=list(FEATURECOUNTS_COLUMNS[1:]))
        table.columns = [Path(c).name.removesuffix(".bam") if c.endswith(".bam") else c for c in table.columns]
    else:
        length_cols = [c for c in _LENGTH_COLUMNS if c in table.columns]
        length = table[length_cols[0]] if length_cols else None
        if length_cols:
            layout = "GEO genewise" if gene_column == "EntrezGeneID" else "table with length"
            table = table.drop(columns=length_cols)
    non_numeric = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise ValueError(f"non-numeric sample columns in {path.name}: {non_numeric}")
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"{path.name}: the count table is empty (shape {table.shape})")
    if not table.index.is_unique:
        dups = table.index[table.index.duplicated()].unique().tolist()
        raise ValueError(f"duplicate gene IDs in {path.name}: {dups[:10]}")
    if not table.columns.is_unique:
        dups = table.columns[table.columns.duplicated()].unique().tolist()
        raise ValueError(f"duplicate sample names in {path.name}: {dups}")

    values = table.to_numpy().T
    check_counts(values, what=f"counts in {path.name}")
    counts = np.ascontiguousarray(values.astype(np.int64))
    obs_names = pd.Index(table.columns.astype(str))
    obs = (
        pd.DataFrame(index=obs_names)
        if sample_sheet is None
        else join_sample_sheet(obs_names, _read_sample_sheet(sample_sheet))
    )
    var = pd.DataFrame(index=table.index.astype(str))
    if length is not None:
        var["length"] = length.to_numpy()
    adata = AnnData(X=counts, obs=obs, var=var)
    adata.layers["counts"] = counts.copy()
    adata.uns["read_counts"] = {"path": str(path), "layout": layout}
    logger.info("read %d samples x %d genes (%s) from %s", *adata.shape, layout, path)
    return adata
