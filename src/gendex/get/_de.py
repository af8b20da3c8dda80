"""Read DE results stored in ``varm``/``uns``."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from .. import _results
from .._results import lookup_de_table  # noqa: F401  (old import path, used by pl)


def de_keys(adata: AnnData) -> list[str]:
    """Keys of the DE results present in ``adata`` (``varm`` tables with a run record in ``uns``).

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=100)
    >>> gdx.get.de_keys(adata)
    []
    """
    return _results.de_keys(adata)


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
    table = _results.lookup_de_table(adata, key).copy()
    if gene_symbols is not None and gene_symbols in adata.var.columns and gene_symbols not in table.columns:
        table.insert(0, gene_symbols, adata.var[gene_symbols].astype(str).to_numpy())
    return table
