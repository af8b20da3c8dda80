"""Multiple-testing corrections."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def bh_adjust(pvalues: ArrayLike) -> NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values (R's ``p.adjust(method="BH")``), NaN-aware.

    NaN p-values stay NaN and do not count towards the number of tests.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv)[::-1]
    ranked = pv[order] * m / np.arange(m, 0, -1)
    adj = np.minimum(1.0, np.minimum.accumulate(ranked))
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out
