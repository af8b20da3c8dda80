"""Read enrichment results stored in ``uns`` by ``tl.enrich``."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from .. import _results


def enrich_keys(adata: AnnData) -> list[str]:
    """Keys of ``uns`` holding an enrichment result (a dict with a ``results`` DataFrame).

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=6, n_genes=100)
    >>> gdx.get.enrich_keys(adata)
    []
    """
    return _results.enrich_keys(adata)


def enrich_results(adata: AnnData, key: str) -> pd.DataFrame:
    """The enrichment table stored under ``adata.uns[key]["results"]`` (a copy).

    Parameters
    ----------
    adata
        AnnData holding a result written by :func:`gendex.tl.enrich`.
    key
        The result's ``key_added``.

    Returns
    -------
    A copy of the table: ``source, score, pvalue, padj, n_genes, direction`` (+ ``leading_genes``, ``overlap``).

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.get.enrich_results(adata, "enrich_ulm_deseq2").head()  # doctest: +SKIP
    """
    return _results.lookup_enrichment(adata, key).copy()
