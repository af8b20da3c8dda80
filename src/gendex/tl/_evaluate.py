"""Evaluate DE results against a known truth (for the simulators): confusion rates, ROC, PR and FDR curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._utils import h5ad_safe
from ..stats._metrics import (
    auroc,
    average_precision,
    confusion_rates,
    fdr_curve,
    precision_recall_curve,
    roc_curve,
)

#: Columns where smaller means stronger evidence; ranked by ``-log10``.
_P_LIKE = ("pvalue", "padj", "qvalue", "lfsr", "P.Value", "adj.P.Val")
#: Signed columns; ranked by absolute value.
_SIGNED = ("stat", "t", "log2FoldChange", "logFC")

DEFAULT_ALPHAS = np.round(np.linspace(0.005, 0.25, 50), 4)


def _score(table: pd.DataFrame, key: str, score: str | None) -> tuple[np.ndarray, str]:
    """Ranking score (larger = more evidence of DE) from a results table, and the column used."""
    if score is None:
        if "pvalue" in table.columns and np.isfinite(table["pvalue"].to_numpy(dtype=np.float64)).any():
            score = "pvalue"
        elif "stat" in table.columns:
            score = "stat"
        else:
            raise ValueError(f"`adata.varm[{key!r}]` has no usable `pvalue` or `stat` column; pass `score=`")
    if score not in table.columns:
        raise KeyError(f"score column {score!r} is not in `adata.varm[{key!r}]`; columns: {list(table.columns)}")
    values = pd.to_numeric(table[score], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(values).all():
        raise ValueError(f"`adata.varm[{key!r}][{score!r}]` has no finite values")
    with np.errstate(divide="ignore"):
        if score in _P_LIKE:
            values = -np.log10(values)
        elif score in _SIGNED:
            values = np.abs(values)
    return values, score


def evaluate_de(
    adata: AnnData,
    *,
    key: str,
    truth_key: str = "is_de",
    alpha: float = 0.05,
    score: str | None = None,
    alphas: Sequence[float] | None = None,
    key_added: str | None = None,
) -> pd.DataFrame:
    """Compare a DE result with the true DE status: error rates of the calls and quality of the ranking.

    Calls are ``padj < alpha`` (NaN ``padj`` is not called). The ranking score orders genes for the ROC and
    precision-recall curves; genes without a score rank last.

    Parameters
    ----------
    adata
        AnnData with a DE result in ``varm[key]`` and the truth in ``var[truth_key]``.
    key
        Key of the DE result.
    truth_key
        Boolean ``var`` column: whether each gene is truly DE (``is_de`` in
        :func:`gendex.datasets.simulate_counts`).
    alpha
        Nominal FDR level of the calls.
    score
        Column of ``varm[key]`` to rank by: p-value-like columns (``pvalue``, ``padj``, ``qvalue``, ``lfsr``)
        by ``-log10``, signed ones (``stat``, ``log2FoldChange``) by absolute value, any other (e.g.
        ``prob_de``) as it is. None uses ``pvalue``, or ``|stat|`` when there is no p-value.
    alphas
        Grid of nominal levels for the FDR curve; by default 50 levels from 0.005 to 0.25.
    key_added
        Key in ``uns``; by default ``f"eval_{key}"``.

    Returns
    -------
    A one-row :class:`~pandas.DataFrame` indexed by ``key`` with ``method, alpha, score, n_genes, n_true,
    n_called, TP, FP, FN, TN, TPR, FPR, FNR, FDR, precision, AUROC, AUPRC``. Also sets
    ``adata.uns[key_added]`` with ``params``, ``metrics`` (that DataFrame), ``roc`` (DataFrame ``fpr, tpr``),
    ``pr`` (DataFrame ``recall, precision``) and ``fdr`` (DataFrame ``alpha, observed_fdr, tpr, n_called``),
    read by :func:`gendex.pl.roc` and :func:`gendex.pl.fdr_curve`.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=500, random_state=0)
    >>> gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    >>> gdx.tl.evaluate_de(adata, key="limma_voom")[["TPR", "FDR", "AUROC"]].shape
    (1, 3)
    """
    if key not in adata.varm:
        raise KeyError(f"no DE result `adata.varm[{key!r}]`; available: {list(adata.varm)}")
    table = adata.varm[key]
    if not isinstance(table, pd.DataFrame) or "padj" not in table.columns:
        raise ValueError(f"`adata.varm[{key!r}]` is not a DE table with a `padj` column")
    if truth_key not in adata.var.columns:
        raise KeyError(f"`adata.var[{truth_key!r}]` not found; available columns: {list(adata.var.columns)}")
    truth_col = adata.var[truth_key]
    if truth_col.isna().any():
        raise ValueError(f"`adata.var[{truth_key!r}]` has missing values")
    if pd.api.types.is_bool_dtype(truth_col):
        truth = truth_col.to_numpy(dtype=bool)
    elif pd.api.types.is_numeric_dtype(truth_col) and truth_col.isin([0, 1]).all():
        truth = truth_col.to_numpy().astype(bool)
    else:
        raise TypeError(f"`adata.var[{truth_key!r}]` must be boolean (or 0/1), got dtype {truth_col.dtype}")
    n_true = int(truth.sum())
    if n_true == 0 or n_true == truth.size:
        raise ValueError(f"`adata.var[{truth_key!r}]` must hold both true and false genes ({n_true} of {truth.size})")
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must lie in (0, 1), got {alpha}")
    grid = DEFAULT_ALPHAS if alphas is None else np.asarray(alphas, dtype=np.float64).ravel()
    if grid.size == 0 or not ((grid > 0) & (grid < 1)).all():
        raise ValueError("`alphas` must be a non-empty grid of levels in (0, 1)")
    values, score_col = _score(table, key, score)
    key_added = key_added or f"eval_{key}"

    padj = table["padj"].to_numpy(dtype=np.float64)
    called = np.where(np.isnan(padj), False, padj < alpha)
    rates = confusion_rates(truth, called)
    fpr, tpr, _ = roc_curve(truth, values)
    recall, precision, _ = precision_recall_curve(truth, values)
    fdr = fdr_curve(truth, padj, grid)
    method = adata.uns.get(key, {}).get("method", key) if isinstance(adata.uns.get(key), dict) else key
    metrics = pd.DataFrame(
        {
            "method": [str(method)],
            "alpha": [float(alpha)],
            "score": [score_col],
            "n_genes": [int(truth.size)],
            "n_true": [n_true],
            "n_called": [int(called.sum())],
            **{k: [v] for k, v in rates.items()},
            "AUROC": [auroc(truth, values)],
            "AUPRC": [average_precision(truth, values)],
        },
        index=pd.Index([key], name="key"),
    )
    adata.uns[key_added] = {
        "params": h5ad_safe({"key": key, "truth_key": truth_key, "alpha": alpha, "score": score_col}),
        "metrics": metrics,
        "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
        "pr": pd.DataFrame({"recall": recall, "precision": precision}),
        "fdr": pd.DataFrame(fdr),
    }
    return metrics.copy()
