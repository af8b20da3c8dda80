"""Truth-based evaluation of DE calls and rankings: confusion rates, ROC/PR curves and their areas."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _as_truth_score(truth: ArrayLike, score: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    y = np.asarray(truth)
    if y.dtype != bool:
        if not np.isin(y, [0, 1]).all():
            raise ValueError("`truth` must be boolean (or 0/1)")
        y = y.astype(bool)
    s = np.asarray(score, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"`truth` and `score` must be 1-d of equal length, got {y.shape} and {s.shape}")
    # untested genes (NaN score) rank below every tested gene
    s = np.where(np.isnan(s), -np.inf, s)
    return y, s


def _cumulative_counts(y: NDArray[np.bool_], s: NDArray[np.float64]) -> tuple[NDArray, NDArray, NDArray]:
    """True and false positives called at each distinct score threshold (descending), and the thresholds."""
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order]
    # the last index of each run of equal scores
    distinct = np.flatnonzero(s_sorted[1:] != s_sorted[:-1])
    ends = np.r_[distinct, y_sorted.size - 1]
    tps = np.cumsum(y_sorted)[ends].astype(np.float64)
    fps = (ends + 1 - tps).astype(np.float64)
    return tps, fps, s_sorted[ends]


def roc_curve(truth: ArrayLike, score: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray]:
    """ROC curve of ``score`` (larger = more evidence of DE) against boolean ``truth``.

    Parameters
    ----------
    truth
        True DE status per gene.
    score
        Ranking score per gene; NaN ranks last.

    Returns
    -------
    ``(fpr, tpr, thresholds)``, starting at ``(0, 0)`` with threshold ``inf``; one point per distinct score.

    Examples
    --------
    >>> from gendex.stats import roc_curve
    >>> fpr, tpr, _ = roc_curve([True, False, True, False], [0.9, 0.8, 0.7, 0.1])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    y, s = _as_truth_score(truth, score)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC needs true and false genes; got {n_pos} true and {n_neg} false")
    tps, fps, thr = _cumulative_counts(y, s)
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, thr]


def precision_recall_curve(
    truth: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray]:
    """Precision-recall curve, one point per distinct score, in order of decreasing threshold.

    Parameters
    ----------
    truth
        True DE status per gene.
    score
        Ranking score per gene; NaN ranks last.

    Returns
    -------
    ``(recall, precision, thresholds)``, starting at recall 0 with precision 1 (the convention of
    scikit-learn's curve end point).

    Examples
    --------
    >>> from gendex.stats import precision_recall_curve
    >>> rec, prec, _ = precision_recall_curve([True, False, True], [0.9, 0.8, 0.7])
    >>> prec.tolist()
    [1.0, 1.0, 0.5, 0.6666666666666666]
    """
    y, s = _as_truth_score(truth, score)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("a precision-recall curve needs at least one true gene")
    tps, fps, thr = _cumulative_counts(y, s)
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return np.r_[0.0, recall], np.r_[1.0, precision], np.r_[np.inf, thr]


def auroc(truth: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve (trapezoidal; ties count one half, as the Mann-Whitney statistic).

    Parameters
    ----------
    truth
        True DE status per gene.
    score
        Ranking score per gene; NaN ranks last.

    Returns
    -------
    The AUROC in [0, 1].

    Examples
    --------
    >>> from gendex.stats import auroc
    >>> auroc([True, False, True, False], [0.9, 0.8, 0.7, 0.1])
    0.75
    """
    fpr, tpr, _ = roc_curve(truth, score)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(truth: ArrayLike, score: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision: ``sum_k (R_k - R_{k-1}) P_k``.

    The step-wise (non-interpolated) estimator over distinct score thresholds, the same as scikit-learn's
    ``average_precision_score``.

    Parameters
    ----------
    truth
        True DE status per gene.
    score
        Ranking score per gene; NaN ranks last.

    Returns
    -------
    The AUPRC in [0, 1].

    Examples
    --------
    >>> from gendex.stats import average_precision
    >>> round(average_precision([True, False, True], [0.9, 0.8, 0.7]), 4)
    0.8333
    """
    recall, precision, _ = precision_recall_curve(truth, score)
    return float(np.sum(np.diff(recall) * precision[1:]))


def confusion_rates(truth: ArrayLike, called: ArrayLike) -> dict[str, float]:
    """Counts and rates of binary DE calls against the truth.

    Parameters
    ----------
    truth
        True DE status per gene.
    called
        Whether each gene was called DE.

    Returns
    -------
    Dict with ``TP, FP, FN, TN`` and ``TPR`` (sensitivity), ``FPR``, ``FNR``, ``FDR`` (false discoveries
    over ``max(calls, 1)``, so 0 without calls) and ``precision`` (NaN without calls).

    Examples
    --------
    >>> from gendex.stats import confusion_rates
    >>> confusion_rates([True, True, False, False], [True, False, True, False])["FDR"]
    0.5
    """
    y = np.asarray(truth, dtype=bool)
    c = np.asarray(called, dtype=bool)
    if y.shape != c.shape:
        raise ValueError(f"`truth` and `called` differ in shape: {y.shape} vs {c.shape}")
    tp = int(np.sum(y & c))
    fp = int(np.sum(~y & c))
    fn = int(np.sum(y & ~c))
    tn = int(np.sum(~y & ~c))
    n_pos, n_neg, n_called = tp + fn, fp + tn, tp + fp
    tpr = tp / n_pos if n_pos else np.nan
    return {
        "TP": tp,
        "FP": fp,
        "FN": fn,
        "TN": tn,
        "TPR": tpr,
        "FPR": fp / n_neg if n_neg else np.nan,
        "FNR": 1.0 - tpr if n_pos else np.nan,
        "FDR": fp / max(n_called, 1),
        "precision": tp / n_called if n_called else np.nan,
    }


def fdr_curve(truth: ArrayLike, padj: ArrayLike, alphas: ArrayLike) -> dict[str, NDArray[np.float64]]:
    """Observed false discovery proportion and power of the calls ``padj < alpha`` over a grid of ``alpha``.

    Parameters
    ----------
    truth
        True DE status per gene.
    padj
        Adjusted p-values (NaN = not called).
    alphas
        Nominal FDR levels.

    Returns
    -------
    Dict of arrays over ``alphas``: ``alpha``, ``observed_fdr`` (0 where nothing is called), ``tpr`` and
    ``n_called``.

    Examples
    --------
    >>> from gendex.stats import fdr_curve
    >>> fdr_curve([True, False], [0.01, 0.04], [0.02, 0.05])["observed_fdr"].tolist()
    [0.0, 0.5]
    """
    y = np.asarray(truth, dtype=bool)
    q = np.asarray(padj, dtype=np.float64)
    a = np.asarray(alphas, dtype=np.float64).ravel()
    if y.shape != q.shape:
        raise ValueError(f"`truth` and `padj` differ in shape: {y.shape} vs {q.shape}")
    q = np.where(np.isnan(q), np.inf, q)
    called = q[None, :] < a[:, None]
    n_called = called.sum(axis=1)
    fp = (called & ~y[None, :]).sum(axis=1)
    tp = n_called - fp
    n_pos = int(y.sum())
    return {
        "alpha": a,
        "observed_fdr": fp / np.maximum(n_called, 1),
        "tpr": tp / n_pos if n_pos else np.full(a.shape, np.nan),
        "n_called": n_called.astype(np.float64),
    }
