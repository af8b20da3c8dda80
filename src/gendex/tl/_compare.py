"""Side-by-side comparison of two DE results stored in ``varm`` (e.g. DESeq2 against the NB-VAE)."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._results import lookup_de_table
from .._utils import h5ad_safe
from ..stats import compare_calls

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

_NEEDED = ("log2FoldChange", "padj")


def _method(adata: AnnData, key: str) -> str:
    record = adata.uns.get(key)
    return str(record.get("method", "unknown")) if isinstance(record, dict) else "unknown"


def compare_de(
    adata: AnnData,
    key1: str,
    key2: str,
    *,
    alpha: float = 0.05,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Compare two DE results on the same genes: log2FC correlation, shrinkage, call concordance, NA genes.

    A gene is *finite* in a result when its ``log2FoldChange`` and ``padj`` are both finite (the method
    gave an estimate and a call: a DESeq2 Cook's outlier or independently filtered gene is not finite),
    and *significant* when it is finite and ``padj < alpha``. For the NB-VAE (``"nbvae_de"``) ``padj`` is
    the q-value (posterior expected FDR), so the call is ``qvalue < alpha``.

    Parameters
    ----------
    adata
        AnnData holding both results in ``varm`` (written by ``gdx.tl`` DE functions).
    key1
        The reference result (e.g. ``"deseq2"``), on the x axis of :func:`gendex.pl.lfc_scatter`.
    key2
        The result compared with it (e.g. ``"nbvae_de"``).
    alpha
        Significance threshold on ``padj`` for both results.
    key_added
        ``uns`` key to write; default ``f"compare_{key1}_vs_{key2}"``.
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    Returns None, or the modified copy when ``copy=True``, and sets ``adata.uns[key_added]``, a dict with

    ``"params"``
        ``key1``, ``key2``, ``alpha`` and the two results' ``method1``/``method2``.
    ``"summary"``
        ``pearson``, ``spearman`` (log2FC on genes finite in both), ``slope``, ``intercept`` (least squares
        of key2's log2FC on key1's: a slope < 1 means key2 shrinks), ``n_both_finite``, ``n_finite_only1``,
        ``n_finite_only2``, the 2x2 call concordance ``n_sig_both``, ``n_sig_only1``, ``n_sig_only2``,
        ``n_sig_neither``, ``n_sig_both_opposite`` (significant in both, opposite signs) and ``agreement``
        (fraction of the genes finite in both with the same call).
    ``"table"``
        :class:`~pandas.DataFrame` indexed by ``var_names`` with ``lfc1, lfc2, padj1, padj2, finite1,
        finite2, sig1, sig2, category``; ``category`` is one of ``"both"``, ``"only1"``, ``"only2"``,
        ``"neither"`` (genes finite in both) or ``"untested"``.

    Examples
    --------
    >>> import gendex as gdx
    >>> gdx.tl.compare_de(adata, "deseq2", "nbvae_de")  # doctest: +SKIP
    >>> adata.uns["compare_deseq2_vs_nbvae_de"]["summary"]["pearson"]  # doctest: +SKIP
    """
    t1 = lookup_de_table(adata, key1, _NEEDED, arg="key1")
    t2 = lookup_de_table(adata, key2, _NEEDED, arg="key2")
    if key1 == key2:
        raise ValueError(f"`key1` and `key2` are both {key1!r}; compare two different results")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be a number in (0, 1), got {alpha!r}")
    if key_added is None:
        key_added = f"compare_{key1}_vs_{key2}"
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"`key_added` must be a non-empty str, got {key_added!r}")
    cols = {}
    for name, table in (("1", t1), ("2", t2)):
        for col in _NEEDED:
            try:
                values = pd.to_numeric(table[col], errors="raise")
                cols[col + name] = values.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError) as err:
                raise TypeError(f"column {col!r} of DE result {name} is not numeric") from err

    summary, table = compare_calls(
        cols["log2FoldChange1"], cols["log2FoldChange2"], cols["padj1"], cols["padj2"], alpha=float(alpha)
    )
    table.index = adata.var_names.copy()
    if summary["n_both_finite"] < 3:
        warnings.warn(
            f"only {summary['n_both_finite']} genes have a finite log2FoldChange and padj in both {key1!r} and "
            f"{key2!r}; the correlations and the slope are NaN",
            UserWarning,
            stacklevel=2,
        )
    params = {
        "key1": key1,
        "key2": key2,
        "alpha": float(alpha),
        "method1": _method(adata, key1),
        "method2": _method(adata, key2),
    }
    if copy:
        adata = adata.copy()
    adata.uns[key_added] = {"params": h5ad_safe(params), "summary": h5ad_safe(summary), "table": table}
    logger.info(
        "compare_de %s vs %s: Pearson %.3f on %d genes, call agreement %.3f",
        key1,
        key2,
        summary["pearson"],
        summary["n_both_finite"],
        summary["agreement"],
    )
    return adata if copy else None
