"""Look-ups of the results that ``tl`` stores, shared by ``tl``, ``get`` and ``pl`` (no import between them).

``get`` exposes these as public readers; ``tl`` functions that read an earlier result (``compare_de``, ``enrich``,
``evaluate_de``, ...) and ``pl`` functions use them directly, so every reader raises the same errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from ._utils import DE_COLUMNS

if TYPE_CHECKING:
    from anndata import AnnData

#: Columns every enrichment result table holds.
ENRICH_COLUMNS = ("source", "score", "pvalue", "padj")


def de_keys(adata: AnnData) -> list[str]:
    """Keys of the DE results present in ``adata`` (``varm`` tables with a run record in ``uns``)."""
    keys = []
    for key in adata.varm:
        table = adata.varm[key]
        if (
            isinstance(table, pd.DataFrame)
            and all(c in table.columns for c in DE_COLUMNS)
            and isinstance(adata.uns.get(key), dict)
            and "method" in adata.uns[key]
        ):
            keys.append(str(key))
    return keys


def lookup_de_table(adata: AnnData, key: str, columns: Sequence[str] = (), *, arg: str = "key") -> pd.DataFrame:
    """``adata.varm[key]`` itself (not copied), checked to be a DE table holding ``columns``.

    The one look-up behind ``get.de_results`` and every ``tl``/``pl`` function that reads a DE result; errors name
    the argument ``arg`` and the results that are available.
    """
    if not isinstance(key, str):
        raise TypeError(f"`{arg}` must be a str naming a DE result in `adata.varm`, got {type(key).__name__}")
    if key not in adata.varm:
        raise KeyError(f"`{arg}`: no DE result `adata.varm[{key!r}]`; available: {de_keys(adata)}")
    table = adata.varm[key]
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"`adata.varm[{key!r}]` is not a DE table (a DataFrame) but a {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise KeyError(f"`adata.varm[{key!r}]` lacks the columns {missing}; it has {list(table.columns)}")
    return table


def enrich_keys(adata: AnnData) -> list[str]:
    """Keys of ``uns`` holding an enrichment result (a dict with a ``results`` DataFrame)."""
    return [str(k) for k, v in adata.uns.items() if isinstance(v, dict) and isinstance(v.get("results"), pd.DataFrame)]


def lookup_enrichment(adata: AnnData, key: str) -> pd.DataFrame:
    """``adata.uns[key]["results"]`` itself (not copied), or a KeyError/TypeError naming the problem."""
    if not isinstance(key, str):
        raise TypeError(f"`key` must be the str key of an enrichment result in `adata.uns`, got {type(key).__name__}")
    record = adata.uns.get(key)
    if record is None:
        raise KeyError(f"no enrichment result `adata.uns[{key!r}]`; available: {enrich_keys(adata)}")
    if not isinstance(record, dict) or not isinstance(record.get("results"), pd.DataFrame):
        raise TypeError(f"`adata.uns[{key!r}]` is not an enrichment result (a dict with a 'results' DataFrame)")
    res = record["results"]
    missing = [c for c in ENRICH_COLUMNS if c not in res.columns]
    if missing:
        raise ValueError(f"`adata.uns[{key!r}]['results']` lacks the columns {missing}")
    return res


def set_labels(res: pd.DataFrame) -> pd.Series:
    """One label per row: the set name, with ``" (up)"``/``" (down)"`` appended when a set has several rows (ORA)."""
    source = res["source"].astype(str)
    if source.is_unique or "direction" not in res.columns:
        return source
    return source + " (" + res["direction"].astype(str) + ")"
