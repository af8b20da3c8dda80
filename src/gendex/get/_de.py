"""Read DE results stored in ``varm``/``uns``."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from anndata import AnnData

from .._utils import DE_COLUMNS


def de_keys(adata: AnnData) -> list[str]:
    """Keys of the DE results present in ``adata`` (``varm`` tables with a run record in ``uns``).

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=100)
    >>> gdx.get.de_keys(adata)
    []
    """
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

    The one look-up behind :func:`de_results` and every ``tl``/``pl`` function that reads a DE result; errors name
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


def de_results(adata: AnnData, key: str = "deseq2", *, gene_symbols: str | None = "symbol") -> pd.DataFrame:
    """The DE table stored under ``adata.varm[key]``, joined with ``var[gene_symbols]`` when present.

    Parameters
    ----------
    adata
        AnnData holding a result written by a ``gdx.tl`` DE function.
    key
        The result's ``key_added``.
    gene_symbols
        ``var`` column with gene symbols to put in front of the table; ignored when absent.

    Returns
    -------
    A copy of the table, indexed by ``var_names``.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.get.de_results(adata, "deseq2").sort_values("padj").head()  # doctest: +SKIP
    """
    table = lookup_de_table(adata, key).copy()
    if gene_symbols is not None and gene_symbols in adata.var.columns and gene_symbols not in table.columns:
        table.insert(0, gene_symbols, adata.var[gene_symbols].astype(str).to_numpy())
    return table
