"""Read gene x sample count tables (plain TSV/CSV, featureCounts, GEO genewise) into AnnData."""

from __future__ import annotations

import csv
import io
import logging
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from ._text import read_text

logger = logging.getLogger(__name__)

#: featureCounts' annotation columns, in its output order.
FEATURECOUNTS_COLUMNS = ("Geneid", "Chr", "Start", "End", "Strand", "Length")
#: Columns that hold a gene length in the layouts we know.
_LENGTH_COLUMNS = ("Length", "length")


#: Separators tried, in order after the one the file name suggests, when ``sep`` is not given.
_SEPARATORS = ("\t", ",", ";", " ")
_SEP_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", " ": "space"}


def _split(line: str, sep: str) -> list[str]:
    try:
        if sep == " ":  # runs of spaces (aligned columns, R's write.table) separate one field
            return next(csv.reader([line.strip()], delimiter=" ", skipinitialspace=True), [])
        return next(csv.reader([line.rstrip("\r\n")], delimiter=sep), [])
    except csv.Error as err:
        reason = str(err).split(" - ")[0]  # drop csv's advice about universal-newline mode
        raise ValueError(
            f"cannot split the line {line[:60]!r} on {sep!r}: {reason} (a stray carriage return or quote?)"
        ) from None


def _n_fields(line: str, sep: str) -> int:
    """Number of fields of ``line`` split on ``sep``; -1 when it does not split (a stray quote)."""
    try:
        return len(_split(line, sep))
    except ValueError:
        return -1


def _head(lines: list[str]) -> tuple[int, str | None, str | None]:
    """Skip leading ``#``/blank lines; return (lines skipped, header line, first data line)."""
    n_skip = 0
    header = None
    for line in lines:
        if header is None and (line.startswith("#") or not line.strip()):
            n_skip += 1
            continue
        if header is None:
            header = line
            continue
        if line.strip():
            return n_skip, header, line
    return n_skip, header, None


def _guess_sep(path: Path, header: str, first: str | None) -> str:
    """The separator: the file name's (``,`` for ``.csv``, else tab) unless the first two lines say otherwise.

    A candidate fits when it splits the header into several fields and the first row into as many (or one more:
    R's nameless row-name column).
    """
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    preferred = "," if name.endswith(".csv") else "\t"
    candidates = (preferred, *[s for s in _SEPARATORS if s != preferred])
    for sep in candidates:
        n_header = _n_fields(header, sep)
        n_first = _n_fields(first, sep) if first is not None else n_header
        if n_header > 1 and n_first in (n_header, n_header + 1):
            return sep
    for sep in candidates:  # ragged rows: keep the first separator the header holds; parsing will say more
        if _n_fields(header, sep) > 1:
            return sep
    return preferred


def _lines(text: str) -> list[str]:
    """The lines of ``text``, split on newlines only (as pandas does; ``str.splitlines`` also splits on NEL)."""
    return [line + "\n" for line in text.split("\n")]


def _scan(path: Path, text: str, sep: str | None) -> tuple[int, list[str], str, int]:
    """Return (lines to skip, header fields, separator, fields in the first row) of the decoded ``text``."""
    n_skip, header, first = _head(_lines(text))
    if header is None:
        raise ValueError(f"{path.name}: the file is empty (no header line)")
    if sep is None:
        sep = _guess_sep(path, header, first)
    try:
        fields = _split(header, sep)
        n_first = len(_split(first, sep)) if first is not None else len(fields)
    except ValueError as err:
        raise ValueError(f"{path.name}: {err}") from None
    return n_skip, fields, sep, n_first


def _one_column_hint(path: Path, sep: str, header: str) -> str:
    """What a table with a single column looked like, and how to read it if it is a table after all."""
    seen = header.strip()[:80]
    return (
        f"the header line {seen!r} has one field when split on {_SEP_NAMES.get(sep, repr(sep))}s "
        "(no tab, comma, semicolon or space between fields); if the file has columns, pass `sep=` with its separator"
    )


def _read_table(path: Path, sep: str | None, gene_column: str | None) -> tuple[pd.DataFrame, str]:
    """Read the table with its header taken verbatim (pandas would rename duplicated names ``S1.1``)."""
    text = read_text(path, what="count table")
    n_skip, fields, sep, n_first = _scan(path, text, sep)
    if len(fields) == 1 and n_first <= 1:
        raise ValueError(
            f"{path.name}: the count table is empty: no sample columns; "
            + _one_column_hint(path, sep, _head(_lines(text))[1] or "")
        )
    if n_first == len(fields) + 1:
        # R's write.table: the row names have no header field
        fields = ["", *fields]
    gene_idx = 0  # the first column unless gene_column names another
    if gene_column is not None:
        if gene_column not in fields:
            raise KeyError(f"gene column {gene_column!r} not in the header of {path.name}; columns: {fields[:10]}")
        gene_idx = fields.index(gene_column)
    try:
        table = pd.read_csv(
            io.StringIO(text),
            sep=r"\s+" if sep == " " else sep,
            header=None,
            skiprows=n_skip + 1,
            names=list(range(len(fields))),
            dtype={gene_idx: str},
            low_memory=False,
        )
    except pd.errors.ParserError as err:
        raise ValueError(f"{path.name}: cannot parse the table with separator {sep!r}: {err}") from err
    table.columns = pd.Index(fields, dtype=object)
    gene_name = fields[gene_idx]
    genes = table.iloc[:, gene_idx]
    if genes.isna().any():
        rows = (np.flatnonzero(genes.isna().to_numpy()) + n_skip + 2)[:5].tolist()
        raise ValueError(f"{path.name}: rows without a gene ID (file lines {rows})")
    table = table.drop(columns=table.columns[gene_idx])
    table.index = pd.Index(genes.astype(str).to_numpy(), dtype=object)
    # a trailing separator gives a nameless, empty last column
    empty = [i for i, c in enumerate(table.columns) if c == "" and table.iloc[:, i].isna().all()]
    if empty:
        table = table.iloc[:, [i for i in range(table.shape[1]) if i not in empty]]
    return table, gene_name


def _first_bad(mask: np.ndarray, genes: pd.Index, samples: pd.Index) -> str:
    g, s = np.argwhere(mask)[0]
    return f"{int(mask.sum())} value(s), e.g. gene {genes[g]!r} in sample {samples[s]!r}"


def _check_count_table(table: pd.DataFrame, name: str) -> np.ndarray:
    """Validate the sample columns as counts; return them as a genes x samples float array."""
    non_numeric = [str(c) for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        col = non_numeric[0]
        values = table[col]
        bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
        example = f" (e.g. {bad.iloc[0]!r} for gene {bad.index[0]!r})" if len(bad) else ""
        raise ValueError(f"{name}: non-numeric values in sample column(s) {non_numeric}{example}")
    values = table.to_numpy(dtype=np.float64)
    genes, samples = table.index, table.columns
    problems = (
        (np.isnan(values), "missing (NaN or empty)"),
        (np.isinf(values), "infinite"),
        (np.isfinite(values) & (values != np.round(values)), "non-integer"),
        (values < 0, "negative"),
    )
    for mask, what in problems:
        if mask.any():
            raise ValueError(
                f"{name}: {what} counts: {_first_bad(mask, genes, samples)}; raw counts must be non-negative "
                "integers (not normalised or transformed values)"
            )
    return values


def _read_sample_sheet(sample_sheet: str | PathLike | pd.DataFrame) -> pd.DataFrame:
    if isinstance(sample_sheet, pd.DataFrame):
        return sample_sheet.copy()
    path = Path(sample_sheet)
    if not path.exists():
        raise FileNotFoundError(f"sample sheet not found: {path}")
    text = read_text(path, what="sample sheet")
    n_skip, fields, sep, _ = _scan(path, text, None)
    sheet = pd.read_csv(
        io.StringIO(text), sep=r"\s+" if sep == " " else sep, skiprows=n_skip, dtype=str, keep_default_na=True
    )
    if not sheet.columns.is_unique or len(set(fields)) != len(fields):
        raise ValueError(f"sample sheet {path.name}: duplicated column names {fields}")
    sheet = sheet.set_index(sheet.columns[0])
    for col in sheet.columns:
        numeric = pd.to_numeric(sheet[col], errors="coerce")
        if sheet[col].notna().any() and numeric.notna().sum() == sheet[col].notna().sum():
            sheet[col] = numeric
    return sheet


def join_sample_sheet(obs_names: pd.Index, sample_sheet: pd.DataFrame) -> pd.DataFrame:
    """Align a sample sheet to ``obs_names``; raise listing the samples it does not cover.

    String columns become categoricals (levels in order of first appearance in the sheet); numeric columns
    stay numeric.
    """
    sheet = sample_sheet.copy()
    if not sheet.columns.is_unique:
        dups = sheet.columns[sheet.columns.duplicated()].unique().tolist()
        raise ValueError(f"the sample sheet has duplicated column names {dups}; rename them")
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
            obs[col] = pd.Categorical(obs[col].where(obs[col].isna(), obs[col].astype(str)), categories=levels)
    obs.columns = [str(c) for c in obs.columns]
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

    Understands plain tables (first column = gene IDs, one column per sample; R's ``write.table`` layout with
    a nameless row-name column too), featureCounts output (``Geneid, Chr, Start, End, Strand, Length``, then
    one column per BAM file; the ``#`` command line is skipped and the BAM paths become sample names:
    ``/data/S1.bam`` -> ``S1``) and GEO genewise tables (``EntrezGeneID, Length``, then samples). Files may be
    compressed (gzip, bzip2, xz: recognised from the file's first bytes, whatever its name). Text that is not
    UTF-8 is read as Latin-1 with a warning. Annotation columns are dropped; a ``Length`` column is kept as
    ``var["length"]``.

    Parameters
    ----------
    path
        Path of the table (``.tsv``, ``.txt``, ``.csv``, optionally compressed).
    sample_sheet
        A table (path or DataFrame indexed by sample name; a file's first column holds the names) joined into
        ``obs``. Its string columns become categoricals (levels in order of appearance; use
        ``adata.obs[col].cat.reorder_categories`` to choose the reference level), columns holding only numbers
        stay numeric. Every sample of the count table must be listed; extra rows are ignored.
    sep
        Field separator; when None, the file name's (``,`` for ``.csv``, else tab) unless the header and first
        row split consistently on another of tab, comma, semicolon or spaces (runs of spaces count as one).
    gene_column
        Header of the column with the gene IDs; the first column when None.

    Returns
    -------
    AnnData with integer (``int64``) counts in ``X`` and in ``layers["counts"]``, gene IDs as ``var_names``
    (str), ``var["length"]`` when the table has a ``Length`` column, the sample sheet in ``obs`` and the source
    and detected layout in ``uns["read_counts"]`` (``{"path", "layout"}``).

    Raises
    ------
    ValueError
        The table is empty or has a single column (the message shows the header it saw); the file is binary
        (a spreadsheet, an ``.h5ad``) or corrupt compressed data; sample or gene names are duplicated;
        a count is missing, infinite, negative, non-integer or not a number; the sample sheet does not cover
        every sample (the error lists them).
    KeyError
        ``gene_column`` is not in the header.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.io.read_counts("counts.tsv", sample_sheet="samples.tsv")  # doctest: +SKIP
    """
    if not isinstance(path, str | PathLike):
        raise TypeError(f"`path` must be a file path (str or Path), got {type(path).__name__}")
    if sep is not None and (not isinstance(sep, str) or len(sep) != 1 or sep in "\r\n\"'"):
        raise ValueError(f"`sep` must be one separator character such as '\\t' or ',', got {sep!r}")
    if sample_sheet is not None and not isinstance(sample_sheet, str | PathLike | pd.DataFrame):
        raise TypeError(f"`sample_sheet` must be a path or a DataFrame, got {type(sample_sheet).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"count table not found: {path}")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise ValueError(f"{path} is {what}, not a count table; pass the path of the table file itself")
    table, gene_name = _read_table(path, sep, gene_column)
    original = [gene_name, *table.columns]

    layout = "table"
    length = None
    if all(c in table.columns for c in FEATURECOUNTS_COLUMNS[1:]):
        layout = "featureCounts"
        length = table["Length"]
        table = table.drop(columns=list(FEATURECOUNTS_COLUMNS[1:]))
        table.columns = pd.Index(
            [Path(c).name.removesuffix(".bam") if c.endswith(".bam") else c for c in table.columns], dtype=object
        )
    else:
        length_cols = [c for c in _LENGTH_COLUMNS if c in table.columns]
        if length_cols:
            length = table[length_cols[0]]
            layout = "GEO genewise" if gene_name == "EntrezGeneID" else "table with length"
            table = table.drop(columns=length_cols)
    if isinstance(length, pd.DataFrame):
        raise ValueError(f"{path.name}: more than one 'Length' column")
    if table.shape[1] == 0:
        raise ValueError(
            f"{path.name}: the count table is empty: no sample columns (the header holds only {original}, which are "
            "gene annotation, not samples)"
        )
    if table.shape[0] == 0:
        raise ValueError(f"{path.name}: the count table is empty: no gene rows (samples {list(table.columns)})")
    if not table.columns.is_unique:
        dups = table.columns[table.columns.duplicated()].unique().tolist()
        raise ValueError(f"{path.name}: duplicate sample names {dups}; sample names must be unique")
    if not table.index.is_unique:
        dups = table.index[table.index.duplicated()].unique().tolist()
        more = " ..." if len(dups) > 10 else ""
        raise ValueError(f"{path.name}: duplicate gene IDs {dups[:10]}{more} ({len(dups)} in all); make them unique")

    values = _check_count_table(table, path.name)
    counts = np.ascontiguousarray(values.T.astype(np.int64))
    obs_names = pd.Index([str(c) for c in table.columns], dtype=object)
    obs = (
        pd.DataFrame(index=obs_names)
        if sample_sheet is None
        else join_sample_sheet(obs_names, _read_sample_sheet(sample_sheet))
    )
    var = pd.DataFrame(index=pd.Index(table.index.astype(str), dtype=object))
    if length is not None:
        var["length"] = pd.to_numeric(length, errors="coerce").to_numpy()
    adata = AnnData(X=counts, obs=obs, var=var)
    adata.layers["counts"] = counts.copy()
    adata.uns["read_counts"] = {"path": str(path), "layout": layout}
    logger.info("read %d samples x %d genes (%s) from %s", *adata.shape, layout, path)
    return adata
