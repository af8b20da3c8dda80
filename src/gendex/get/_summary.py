"""Counts of up, down and not-significant genes per DE result (limma's ``summary(decideTests(...))``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._results import de_keys, lookup_de_table


def de_summary(
    adata: AnnData,
    keys: str | Sequence[str] | None = None,
    *,
    alpha: float = 0.05,
    lfc_threshold: float = 0.0,
    call: str = "padj",
) -> pd.DataFrame:
    """How many genes each DE result calls up, down or not significant.

    A gene is *up* when ``call < alpha`` and ``log2FoldChange > lfc_threshold``, *down* when ``call < alpha``
    and ``log2FoldChange < -lfc_threshold``, and *not significant* otherwise; genes whose ``call`` is NaN
    (not tested, e.g. DESeq2's filtered or outlier genes) are counted apart. This is limma's
    ``summary(decideTests(fit, p.value=alpha, lfc=lfc_threshold))`` for one contrast per result.

    Parameters
    ----------
    adata
        AnnData holding results written by ``gdx.tl`` DE functions.
    keys
        One result key or several; None takes every DE result in ``adata`` (:func:`gendex.get.de_keys`).
    alpha
        Level of the calls.
    lfc_threshold
        Smallest absolute ``log2FoldChange`` of a call (0: every significant gene).
    call
        Column the calls are made on: ``"padj"`` (default) or ``"pvalue"``.

    Returns
    -------
    A :class:`~pandas.DataFrame` with one row per key (index ``key``) and integer columns ``up``, ``down``,
    ``not_significant`` and ``not_tested``; they add up to the number of genes.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=500)
    >>> gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    >>> gdx.get.de_summary(adata, "limma_voom").columns.tolist()
    ['up', 'down', 'not_significant', 'not_tested']
    """
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must lie in (0, 1), got {alpha}")
    if not np.isfinite(lfc_threshold) or lfc_threshold < 0:
        raise ValueError(f"`lfc_threshold` must be a finite number >= 0, got {lfc_threshold}")
    if keys is None:
        keys = de_keys(adata)
        if not keys:
            raise ValueError("no DE result in `adata`; run a `gdx.tl` DE function (e.g. `tl.deseq2`) first")
    elif isinstance(keys, str):
        keys = [keys]
    rows = {}
    for key in keys:
        table = lookup_de_table(adata, key, [call, "log2FoldChange"], arg="keys")
        p = pd.to_numeric(table[call], errors="coerce").to_numpy(dtype=np.float64)
        lfc = pd.to_numeric(table["log2FoldChange"], errors="coerce").to_numpy(dtype=np.float64)
        tested = ~np.isnan(p)
        with np.errstate(invalid="ignore"):
            significant = tested & (p < alpha)
            up = significant & (lfc > lfc_threshold)
            down = significant & (lfc < -lfc_threshold)
        rows[str(key)] = {
            "up": int(up.sum()),
            "down": int(down.sum()),
            "not_significant": int((tested & ~up & ~down).sum()),
            "not_tested": int((~tested).sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("key")
