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


def _bool_truth(adata: AnnData, truth: str) -> np.ndarray:
    if truth not in adata.var.columns:
        raise KeyError(f"`adata.var[{truth!r}]` not found; available columns: {list(adata.var.columns)}")
    truth_col = adata.var[truth]
    if truth_col.isna().any():
        raise ValueError(f"`adata.var[{truth!r}]` has missing values")
    if pd.api.types.is_bool_dtype(truth_col):
        return truth_col.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(truth_col) and truth_col.isin([0, 1]).all():
        return truth_col.to_numpy().astype(bool)
    raise TypeError(f"`adata.var[{truth!r}]` must be boolean (or 0/1), got dtype {truth_col.dtype}")


def evaluate_de(
    adata: AnnData,
    key: str | None = None,
    *,
    truth: str = "is_de",
    call: str = "padj",
    threshold: float = 0.05,
    score: str | None = None,
    alphas: Sequence[float] | None = None,
    key_added: str | None = None,
    truth_key: str | None = None,
    alpha: float | None = None,
    copy: bool = False,
) -> pd.DataFrame | AnnData:
    """Compare a DE result with the true DE status: error rates of the calls and quality of the ranking.

    A gene is called when ``varm[key][call] < threshold`` (NaN is not called): ``call="padj"`` for calls at
    an FDR level, ``call="pvalue"`` for the raw-p rule of a classroom exercise (its FPR is about
    ``threshold``), or any p-like column (``qvalue``, ``lfsr``). The ranking score orders genes for the ROC and
    precision-recall curves; genes without a score rank last.

    A null simulation (no truly DE gene) is evaluated too: every call is then a false discovery, so the FDR
    is 1 when anything is called (0 when nothing is), the FPR is the share of genes called, and the TPR, FNR,
    AUROC, AUPRC and curves, which need true genes, are NaN (empty curves). Likewise when every gene is
    truly DE, the FPR and the ranking metrics are NaN.

    Parameters
    ----------
    adata
        AnnData with a DE result in ``varm[key]`` and the truth in ``var[truth]``.
    key
        Key of the DE result.
    truth
        Boolean ``var`` column: whether each gene is truly DE (``is_de`` in
        :func:`gendex.datasets.simulate_counts`, ``is_shifted`` in :func:`gendex.datasets.simulate_classroom`).
    call
        Column of ``varm[key]`` that calls a gene below ``threshold``: ``"padj"`` (default) or ``"pvalue"``.
    threshold
        Level of the calls (nominal FDR for ``padj``, significance level for ``pvalue``).
    score
        Column of ``varm[key]`` to rank by: p-value-like columns (``pvalue``, ``padj``, ``qvalue``, ``lfsr``)
        by ``-log10``, signed ones (``stat``, ``log2FoldChange``) by absolute value, any other (e.g.
        ``prob_de``) as it is. None uses ``pvalue``, or ``|stat|`` when there is no p-value.
    alphas
        Grid of nominal levels for the FDR curve of ``padj`` (``call`` when there is no ``padj``); by default
        50 levels from 0.005 to 0.25.
    key_added
        Key in ``uns``; by default ``f"eval_{key}"``.
    truth_key
        Deprecated name of ``truth`` (kept one release).
    alpha
        Deprecated name of ``threshold`` (kept one release).
    copy
        Work on a copy of ``adata`` and return that copy (with ``uns[key_added]`` set) instead of the metrics.

    Returns
    -------
    A one-row :class:`~pandas.DataFrame` indexed by ``key`` with ``method, call, threshold, score, n_genes, n_true,
    n_called, TP, FP, FN, TN, TPR, FPR, FNR, FDR, precision, AUROC, AUPRC``. Also sets ``adata.uns[key_added]``
    with ``params``, ``metrics`` (that DataFrame), ``roc`` (DataFrame ``fpr, tpr``), ``pr`` (DataFrame
    ``recall, precision``) and ``fdr`` (DataFrame ``alpha, observed_fdr, tpr, n_called``), read by
    :func:`gendex.pl.roc` and :func:`gendex.pl.fdr_curve`.

    Examples
    --------
    >>> import gendex as gdx
    >>> adata = gdx.datasets.simulate_counts(n_samples=8, n_genes=500, random_state=0)
    >>> gdx.tl.limma_voom(adata, design="~condition", contrast=["condition", "B", "A"])
    >>> gdx.tl.evaluate_de(adata, "limma_voom")[["TPR", "FDR", "AUROC"]].shape
    (1, 3)
    >>> gdx.tl.evaluate_de(adata, "limma_voom", call="pvalue", threshold=0.05)["call"].iloc[0]
    'pvalue'
    """
    from .._contrast import deprecated_argument

    if truth_key is not None:
        deprecated_argument("truth_key", "truth=", "tl.evaluate_de")
        truth = truth_key
    if alpha is not None:
        deprecated_argument("alpha", "threshold=", "tl.evaluate_de")
        threshold = alpha
    if key is None:
        raise TypeError("tl.evaluate_de() needs the DE result's key: `tl.evaluate_de(adata, key)`")
    if key not in adata.varm:
        raise KeyError(f"no DE result `adata.varm[{key!r}]`; available: {list(adata.varm)}")
    table = adata.varm[key]
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"`adata.varm[{key!r}]` is not a DE results table")
    if call not in table.columns:
        raise KeyError(
            f"call column {call!r} is not in `adata.varm[{key!r}]`; use call='padj' or 'pvalue' "
            f"(columns: {list(table.columns)})"
        )
    y = _bool_truth(adata, truth)
    n_true = int(y.sum())
    if not 0 < threshold < 1:
        raise ValueError(f"`threshold` (`alpha`) must lie in (0, 1), got {threshold}")
    grid = DEFAULT_ALPHAS if alphas is None else np.asarray(alphas, dtype=np.float64).ravel()
    if grid.size == 0 or not ((grid > 0) & (grid < 1)).all():
        raise ValueError("`alphas` must be a non-empty grid of levels in (0, 1)")
    values, score_col = _score(table, key, score)
    key_added = key_added or f"eval_{key}"

    p_call = pd.to_numeric(table[call], errors="coerce").to_numpy(dtype=np.float64)
    called = np.where(np.isnan(p_call), False, p_call < threshold)
    rates = confusion_rates(y, called)
    both = 0 < n_true < y.size
    if both:
        fpr, tpr, _ = roc_curve(y, values)
        recall, precision, _ = precision_recall_curve(y, values)
        area_roc, area_pr = auroc(y, values), average_precision(y, values)
    else:  # one class only (a null simulation): no ranking metric is defined
        fpr = tpr = recall = precision = np.empty(0)
        area_roc = area_pr = np.nan
    fdr_col = "padj" if "padj" in table.columns else call
    fdr = fdr_curve(y, pd.to_numeric(table[fdr_col], errors="coerce").to_numpy(dtype=np.float64), grid)
    method = adata.uns.get(key, {}).get("method", key) if isinstance(adata.uns.get(key), dict) else key
    metrics = pd.DataFrame(
        {
            "method": [str(method)],
            "call": [call],
            "threshold": [float(threshold)],
            "score": [score_col],
            "n_genes": [int(y.size)],
            "n_true": [n_true],
            "n_called": [int(called.sum())],
            **{k: [v] for k, v in rates.items()},
            "AUROC": [area_roc],
            "AUPRC": [area_pr],
        },
        index=pd.Index([key], name="key"),
    )
    params = {"key": key, "truth": truth, "call": call, "threshold": threshold, "score": score_col}
    if copy:
        adata = adata.copy()
    adata.uns[key_added] = {
        "params": h5ad_safe(params),
        "metrics": metrics,
        "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
        "pr": pd.DataFrame({"recall": recall, "precision": precision}),
        "fdr": pd.DataFrame(fdr),
    }
    return adata if copy else metrics.copy()
