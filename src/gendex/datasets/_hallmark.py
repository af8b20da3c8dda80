"""``datasets.hallmark``: MSigDB hallmark gene sets through decoupler's online loader (network needed)."""

from __future__ import annotations

import logging
import urllib.error
from typing import Literal

import pandas as pd

logger = logging.getLogger(__name__)

OFFLINE_HINT = (
    "Offline alternative: download the MSigDB hallmark GMT once (e.g. 'h.all.v2023.2.Hs.symbols.gmt' for human or "
    "'mh.all.v2023.2.Mm.symbols.gmt' for mouse, from https://www.gsea-msigdb.org/gsea/msigdb/) and read it with "
    "`gdx.io.read_gmt(path)`; pass the result as `net` to `gdx.tl.enrich`."
)


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
    """MSigDB hallmark gene sets (50 sets, gene symbols) downloaded through ``decoupler.op.hallmark``.

    This is the only gendex function that uses the network (OmniPath, and for a non-human ``organism`` also the
    HCOP ortholog table). Tests and the tutorials use local GMT files with :func:`gendex.io.read_gmt` instead.

    Parameters
    ----------
    organism
        ``"human"``, or another organism that decoupler translates to by orthology (e.g. ``"mouse"``; this uses
        human-to-mouse orthologs, not MSigDB's curated mouse collection).
    license
        Passed to decoupler (``"academic"`` or ``"commercial"``).

    Returns
    -------
    Long DataFrame with columns ``source`` (e.g. ``HALLMARK_HYPOXIA``: decoupler drops the ``HALLMARK_`` prefix,
    which is restored here so that names match MSigDB GMT files) and ``target`` (gene symbol).

    Raises
    ------
    ConnectionError
        When the download fails (no network, server unavailable); the message names the offline alternative
        (:func:`gendex.io.read_gmt` on an MSigDB GMT file).

    Examples
    --------
    >>> import gendex as gdx
    >>> net = gdx.datasets.hallmark("mouse")  # doctest: +SKIP
    """
    if not isinstance(organism, str) or not organism:
        raise TypeError(f"`organism` must be a non-empty string such as 'human' or 'mouse', got {organism!r}")
    import decoupler as dc

    try:
        net = dc.op.hallmark(organism=organism, license=license)
    except _network_errors() as err:
        raise ConnectionError(
            f"could not download the hallmark gene sets for {organism!r} with decoupler's online loader "
            f"(`decoupler.op.hallmark` needs the network): {type(err).__name__}: {err}. {OFFLINE_HINT}"
        ) from err
    net = net[["source", "target"]].astype(str)
    net["source"] = [s if s.startswith("HALLMARK_") else f"HALLMARK_{s}" for s in net["source"]]
    net = net.drop_duplicates().reset_index(drop=True)
    logger.info("downloaded %d hallmark sets, %d memberships (%s)", net["source"].nunique(), len(net), organism)
    return net
