"""Two-sample t-tests per gene, vectorised and NaN-aware."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special


@dataclass(frozen=True)
class TTestResult:
    """Per-gene two-sample t-test results.

    Attributes
    ----------
    statistic
        t-statistics (group 1 minus group 2).
    pvalue
        Two-sided p-values.
    df
        Degrees of freedom (Welch-Satterthwaite for the unequal-variance test).
    se
        Standard error of the difference of means.
    mean1, mean2
        Group means over the non-missing values.
    n1, n2
        Numbers of non-missing values per group.
    """

    statistic: NDArray[np.float64]
    pvalue: NDArray[np.float64]
    df: NDArray[np.float64]
    se: NDArray[np.float64]
    mean1: NDArray[np.float64]
    mean2: NDArray[np.float64]
    n1: NDArray[np.int64]
    n2: NDArray[np.int64]


def _moments(x: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """Per-column count, mean and unbiased variance over non-NaN values (NaN where undefined)."""
    ok = ~np.isnan(x)
    n = ok.sum(axis=0)
    filled = np.where(ok, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / n
        dev = np.where(ok, x - mean, 0.0)
        var = (dev**2).sum(axis=0) / (n - 1)
    mean = np.where(n > 0, mean, np.nan)
    var = np.where(n > 1, var, np.nan)
    return n, mean, var


def ttest_ind(x1: ArrayLike, x2: ArrayLike, *, equal_var: bool = False) -> TTestResult:
    """Welch's (or Student's) two-sample t-test for every column, ignoring NaN.

    Equivalent to ``scipy.stats.ttest_ind(x1, x2, equal_var=equal_var, nan_policy="omit")`` column by column,
    but vectorised. A gene with fewer than two non-missing values in a group gets NaN; a gene with zero
    variance in both groups gets ``+-inf`` (p = 0) when the means differ and NaN when they are equal.

    Parameters
    ----------
    x1
        Samples x genes values of group 1 (NaN = missing).
    x2
        Samples x genes values of group 2.
    equal_var
        Student's pooled-variance test instead of Welch's.

    Returns
    -------
    A :class:`TTestResult`.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import ttest_ind
    >>> rng = np.random.default_rng(0)
    >>> res = ttest_ind(rng.normal(1, 1, (10, 3)), rng.normal(0, 1, (12, 3)))
    >>> res.pvalue.shape
    (3,)
    """
    a = np.asarray(x1, dtype=np.float64)
    b = np.asarray(x2, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"`x1`, `x2` must be samples x genes arrays with the same genes: {a.shape}, {b.shape}")
    if np.isinf(a).any() or np.isinf(b).any():
        raise ValueError("the values contain infinities")
    n1, m1, v1 = _moments(a)
    n2, m2, v2 = _moments(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        if equal_var:
            df = (n1 + n2 - 2).astype(np.float64)
            pooled = ((n1 - 1) * v1 + (n2 - 1) * v2) / df
            se = np.sqrt(pooled * (1.0 / n1 + 1.0 / n2))
        else:
            q1 = v1 / n1
            q2 = v2 / n2
            se = np.sqrt(q1 + q2)
            df = (q1 + q2) ** 2 / (q1**2 / (n1 - 1) + q2**2 / (n2 - 1))
        t = (m1 - m2) / se
    bad = (n1 < 2) | (n2 < 2)
    t = np.where(bad, np.nan, t)
    df = np.where(bad | np.isnan(df), np.nan, df)
    # zero variance in both groups: Welch's df is 0/0; any finite df gives p = 0 for infinite t
    df = np.where(np.isinf(t) & np.isnan(df), (n1 + n2 - 2).astype(np.float64), df)
    p = np.where(np.isinf(t), 0.0, 2.0 * special.stdtr(df, -np.abs(np.where(np.isinf(t), 0.0, t))))
    p = np.where(np.isnan(t), np.nan, p)
    se = np.where(bad, np.nan, se)
    return TTestResult(
        statistic=t, pvalue=p, df=df, se=se, mean1=m1, mean2=m2, n1=n1.astype(np.int64), n2=n2.astype(np.int64)
    )
