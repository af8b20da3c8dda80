"""Read DE results stored in ``varm``/``uns``."""

from __future__ import annotations

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
    if key not in adata.varm:
        raise KeyError(f"no DE result `adata.varm[{key!r}]`; available: {de_keys(adata)}")
    table = adata.varm[key]
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"`adata.varm[{key!r}]` is not a DE table (a DataFrame) but a {type(table).__name__}")
    table = table.copy()
    if gene_symbols is not None and gene_symbols in adata.var.columns and gene_symbols not in table.columns:
        table.insert(0, gene_symbols, adata.var[gene_symbols].astype(str).to_numpy())
    return table
