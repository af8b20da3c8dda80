"""Agreement between two DE results on the same genes: correlation, shrinkage slope and call concordance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import rankdata

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: Concordance categories of :func:`compare_calls`, in display order.
CATEGORIES = ("both", "only1", "only2", "neither", "untested")


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation of two equal-length vectors; NaN when either is constant or has < 2 values."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    if x.size < 2:
        return float("nan")
    xc = x - x.mean()
    yc = y - y.mean()
    denom = np.sqrt((xc @ xc) * (yc @ yc))
    if denom == 0 or not np.isfinite(denom):
        return float("nan")
    return float(np.clip((xc @ yc) / denom, -1.0, 1.0))


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either vector is constant."""
    return pearson(rankdata(np.asarray(x, dtype=np.float64)), rankdata(np.asarray(y, dtype=np.float64)))


def ols_line(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Least-squares ``(slope, intercept)`` of ``y`` on ``x``; NaN when ``x`` is constant or has < 2 values."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return float("nan"), float("nan")
    xc = x - x.mean()
    sxx = xc @ xc
    if sxx == 0:
        return float("nan"), float("nan")
    slope = float((xc @ (y - y.mean())) / sxx)
    return slope, float(y.mean() - slope * x.mean())


def compare_calls(
    lfc1: ArrayLike,
    lfc2: ArrayLike,
    padj1: ArrayLike,
    padj2: ArrayLike,
    *,
    alpha: float = 0.05,
) -> tuple[dict[str, float | int], pd.DataFrame]:
    """Compare two DE results gene by gene.

    A gene is *finite* in a result when both its log2 fold change and its adjusted p-value are finite (the
    method gave an estimate and a call); it is *significant* when it is finite and ``padj < alpha``.
    Genes finite in both are put into one of ``"both"``, ``"only1"``, ``"only2"``, ``"neither"``
    (significant in both, only in the first, only in the second, in none); the others are ``"untested"``.

    Parameters
    ----------
    lfc1, lfc2
        log2 fold changes of the two results (same genes, same order).
    padj1, padj2
        Adjusted p-values (or any error-rate-controlling score such as a q-value) of the two results.
    alpha
        Significance threshold on ``padj``.

    Returns
    -------
    ``(summary, table)``. ``summary`` holds ``pearson``, ``spearman`` (of log2FC on genes finite in both),
    ``slope`` and ``intercept`` (least squares of ``lfc2`` on ``lfc1``; a slope below 1 means the second
    result shrinks the first); these four are NaN when fewer than 3 genes are finite in both. Then
    ``n_both_finite``, ``n_finite_only1``, ``n_finite_only2``, ``n_sig_both``, ``n_sig_only1``,
    ``n_sig_only2``, ``n_sig_neither`` (call concordance among genes finite in both),
    ``n_sig_both_opposite`` (significant in both with opposite signs) and ``agreement`` (fraction of genes
    finite in both with the same call). ``table`` has the columns ``lfc1, lfc2, padj1, padj2, finite1,
    finite2, sig1, sig2, category`` (a categorical with the levels above), one row per gene.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import compare_calls
    >>> lfc1, padj1 = [1.0, -2.0, 0.1, np.nan], [0.01, 0.001, 0.5, np.nan]
    >>> lfc2, padj2 = [0.8, -1.5, 0.2, 0.3], [0.02, 0.2, 0.6, 0.9]
    >>> summary, table = compare_calls(lfc1, lfc2, padj1, padj2)
    >>> summary["n_sig_both"], summary["n_finite_only2"], table["category"].tolist()
    (1, 1, ['both', 'only1', 'neither', 'untested'])
    """
    lfc1, lfc2, padj1, padj2 = (np.asarray(v, dtype=np.float64) for v in (lfc1, lfc2, padj1, padj2))
    shapes = {v.shape for v in (lfc1, lfc2, padj1, padj2)}
    if len(shapes) != 1 or lfc1.ndim != 1:
        raise ValueError(f"all four inputs must be 1-D of the same length, got shapes {sorted(shapes)}")
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha}")
    finite1 = np.isfinite(lfc1) & np.isfinite(padj1)
    finite2 = np.isfinite(lfc2) & np.isfinite(padj2)
    both = finite1 & finite2
    with np.errstate(invalid="ignore"):
        sig1 = finite1 & (padj1 < alpha)
        sig2 = finite2 & (padj2 < alpha)
    category = np.full(lfc1.shape, "untested", dtype=object)
    category[both & sig1 & sig2] = "both"
    category[both & sig1 & ~sig2] = "only1"
    category[both & ~sig1 & sig2] = "only2"
    category[both & ~sig1 & ~sig2] = "neither"

    x, y = lfc1[both], lfc2[both]
    n_both = int(both.sum())
    enough = n_both >= 3  # with 2 genes r is +-1 and the line exact: not a measure of agreement
    slope, intercept = ols_line(x, y) if enough else (float("nan"), float("nan"))
    n_sig_both = int((both & sig1 & sig2).sum())
    n_sig_neither = int((both & ~sig1 & ~sig2).sum())
    summary: dict[str, float | int] = {
        "pearson": pearson(x, y) if enough else float("nan"),
        "spearman": spearman(x, y) if enough else float("nan"),
        "slope": slope,
        "intercept": intercept,
        "n_both_finite": n_both,
        "n_finite_only1": int((finite1 & ~finite2).sum()),
        "n_finite_only2": int((~finite1 & finite2).sum()),
        "n_sig_both": n_sig_both,
        "n_sig_only1": int((both & sig1 & ~sig2).sum()),
        "n_sig_only2": int((both & ~sig1 & sig2).sum()),
        "n_sig_neither": n_sig_neither,
        "n_sig_both_opposite": int((both & sig1 & sig2 & (np.sign(lfc1) != np.sign(lfc2))).sum()),
        "agreement": (n_sig_both + n_sig_neither) / n_both if n_both else float("nan"),
    }
    table = pd.DataFrame(
        {
            "lfc1": lfc1,
            "lfc2": lfc2,
            "padj1": padj1,
            "padj2": padj2,
            "finite1": finite1,
            "finite2": finite2,
            "sig1": sig1,
            "sig2": sig2,
            "category": pd.Categorical(category, categories=list(CATEGORIES)),
        }
    )
    return summary, table
