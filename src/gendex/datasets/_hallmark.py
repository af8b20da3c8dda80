"""``datasets.hallmark``: MSigDB hallmark gene sets, the table decoupler's ``op.hallmark`` reads from OmniPath."""

from __future__ import annotations

import io
import logging
import urllib.error
from pathlib import Path
from typing import Literal

import pandas as pd

from ._download import Remote, fetch

logger = logging.getLogger(__name__)

#: The table behind ``decoupler.op.hallmark`` (decoupler 2.x): one row per (set, gene symbol).
HALLMARK_REMOTE = Remote(
    url="https://static.omnipathdb.org/tables/msigdb-hallmark.tsv.gz",
    filename="msigdb-hallmark.tsv.gz",
    what="the MSigDB hallmark gene sets (OmniPath)",
)
_COLUMNS = ("geneset", "genesymbol")

OFFLINE_HINT = (
    "Offline alternative: download the MSigDB hallmark GMT once (e.g. 'h.all.v2023.2.Hs.symbols.gmt' for human or "
    "'mh.all.v2023.2.Mm.symbols.gmt' for mouse, from https://www.gsea-msigdb.org/gsea/msigdb/) and read it with "
    "`gdx.io.read_gmt(path)`; pass the result as `net` to `gdx.tl.enrich`."
)


def _read_table(path: Path) -> pd.DataFrame:
    """The OmniPath hallmark table as (source, target) pairs; ``ValueError`` when it is not that table."""
    from ..io._text import read_text

    table = pd.read_csv(io.StringIO(read_text(path, what="hallmark table")), sep="\t", dtype=str)
    missing = [c for c in _COLUMNS if c not in table.columns]
    if missing or table.empty:
        raise ValueError(f"it is not the hallmark table: columns {list(table.columns)[:10]}, {len(table)} rows")
    net = pd.DataFrame({"source": table["geneset"], "target": table["genesymbol"]}).dropna()
    # complexes are written COMPLEX:A_B; their members count one by one, as decoupler does
    net["target"] = net["target"].str.replace("COMPLEX:", "", regex=False).str.split("_")
    return net.explode("target", ignore_index=True)


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, urllib.error.URLError, TimeoutError]
    try:
        import requests

        errors.append(requests.exceptions.RequestException)
    except ImportError:  # pragma: no cover - requests is a decoupler dependency
        pass
    return tuple(errors)


def hallmark(
    organism: Literal["human", "mouse"] | str = "human",
    *,
    license: str = "academic",
) -> pd.DataFrame:
    """MSigDB hallmark gene sets (50 sets, gene symbols): the table decoupler's ``op.hallmark`` uses.

    The table (``static.omnipathdb.org/tables/msigdb-hallmark.tsv.gz``) is downloaded once into the cache
    (``$XDG_CACHE_HOME/gendex``, by default ``~/.cache/gendex``) by the same checked downloader as
    :func:`gendex.datasets.gse60450`; later calls read the cached copy offline. For a non-human ``organism``
    the symbols are translated by ``decoupler.op.translate``, which downloads the HCOP ortholog table each time.
    These two data sets are the only gendex functions that use the network; tests and the tutorials use local
    GMT files with :func:`gendex.io.read_gmt` instead.

    Parameters
    ----------
    organism
        ``"human"``, or another organism that decoupler translates to by orthology (e.g. ``"mouse"``; this uses
        human-to-mouse orthologs, not MSigDB's curated mouse collection).
    license
        Kept for decoupler's signature (``"academic"``, ``"commercial"`` or ``"nonprofit"``); the hallmark table
        is the same for all three.

    Returns
    -------
    Long DataFrame with columns ``source`` (e.g. ``HALLMARK_HYPOXIA``, the names of MSigDB's GMT files) and
    ``target`` (gene symbol), one row per membership.

    Raises
    ------
    ConnectionError
        When the download fails (no network, server unavailable, cut short); the message names the offline
        alternative (:func:`gendex.io.read_gmt` on an MSigDB GMT file). Nothing is left in the cache.

    Examples
    --------
    >>> import gendex as gdx
    >>> net = gdx.datasets.hallmark("mouse")  # doctest: +SKIP
    """
    if not isinstance(organism, str) or not organism:
        raise TypeError(f"`organism` must be a non-empty string such as 'human' or 'mouse', got {organism!r}")
    if license not in ("academic", "commercial", "nonprofit"):
        raise ValueError(f"`license` must be 'academic', 'commercial' or 'nonprofit', got {license!r}")
    net = _read_table(fetch(HALLMARK_REMOTE, check=_read_table, offline_hint=OFFLINE_HINT))
    if organism != "human":
        import decoupler as dc

        try:
            net = dc.op.translate(net, columns=["target"], target_organism=organism, verbose=False)
        except _network_errors() as err:
            raise ConnectionError(
                f"could not translate the hallmark gene sets to {organism!r} (`decoupler.op.translate` downloads "
                f"the HCOP ortholog table and needs the network): {type(err).__name__}: {err}. {OFFLINE_HINT}"
            ) from None
    net = net[["source", "target"]].astype(str)
    net["source"] = [s if s.startswith("HALLMARK_") else f"HALLMARK_{s}" for s in net["source"]]
    net = net.drop_duplicates().reset_index(drop=True)
    logger.info("hallmark: %d sets, %d memberships (%s)", net["source"].nunique(), len(net), organism)
    return net
