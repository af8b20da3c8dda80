"""Read gene-set files (GMT) into decoupler's long ``source``/``target`` network format."""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import pandas as pd

from ._text import read_text

logger = logging.getLogger(__name__)

#: Gene fields that mean "no gene" (some exported GMT files write them for unmapped members).
MISSING_GENES = frozenset({"", "None", "NA", "NaN", "nan", "null", "NULL"})


def read_gmt(path: str | PathLike) -> pd.DataFrame:
    """Read a GMT gene-set file into a long DataFrame with columns ``source``, ``target`` and ``description``.

    Each line of a GMT file is ``name<TAB>description<TAB>gene<TAB>gene...``. Fields are split on tabs only, so
    descriptions may contain spaces (unlike ``decoupler.pp.read_gmt``, which splits on any whitespace and
    cannot read ``.gz`` files). The description is kept in every row of its set (the first one, when a set name
    repeats): GO-style files put the term's name there (``GOBP_0007156`` -> "homophilic cell adhesion"), MSigDB
    files a URL. Empty gene fields and missing-value placeholders (``None``, ``NA``, ``NaN``, ``null``) are
    dropped, surrounding whitespace is stripped and repeated (set, gene) pairs are kept once; a set left without
    genes has no rows. Gene identifiers are kept as strings (Entrez IDs stay ``"12345"``, matching string
    ``var_names``).

    Parameters
    ----------
    path
        Path of the GMT file; gzip (or bzip2, xz) data is recognised from its first bytes, whatever the name.
        Text that is not UTF-8 is read as Latin-1 with a warning.

    Returns
    -------
    A DataFrame with one row per (set, gene) membership, in file order, and ``str`` columns ``source`` (set
    name), ``target`` (gene) and ``description`` (the set's description, ``""`` when the file has none). This is
    the ``net`` that :func:`gendex.tl.enrich` and ``decoupler.mt.*`` take (they ignore ``description``).

    Examples
    --------
    >>> import gendex as gdx
    >>> net = gdx.io.read_gmt("mh.all.v2022.1.Mm.symbols.gmt")  # doctest: +SKIP
    >>> net.groupby("source").size().head()  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GMT file not found: {path}")
    sources: list[str] = []
    targets: list[str] = []
    descriptions: dict[str, str] = {}
    n_sets = 0
    text = read_text(path, what="GMT file")  # gzip/bzip2/xz by content; UTF-8, else Latin-1 with a warning
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        name = fields[0].strip()
        if len(fields) < 2 or not name:
            raise ValueError(
                f"{path.name}, line {lineno}: not a GMT record (expected 'name<TAB>description<TAB>genes...', "
                f"found {len(fields)} tab-separated field(s) starting {line[:60]!r})"
            )
        n_sets += 1
        descriptions.setdefault(name, fields[1].strip())
        genes = [g.strip() for g in fields[2:]]
        genes = [g for g in genes if g not in MISSING_GENES]
        sources.extend([name] * len(genes))
        targets.extend(genes)
    if n_sets == 0:
        raise ValueError(f"{path.name}: no gene sets found (the file is empty)")
    net = pd.DataFrame(
        {"source": sources, "target": targets, "description": [descriptions[s] for s in sources]}, dtype=object
    )
    n_rows = len(net)
    net = net.drop_duplicates(subset=["source", "target"]).reset_index(drop=True)
    logger.info(
        "read %d gene sets (%d with genes), %d memberships (%d duplicates dropped) from %s",
        n_sets,
        net["source"].nunique(),
        len(net),
        n_rows - len(net),
        path,
    )
    return net
