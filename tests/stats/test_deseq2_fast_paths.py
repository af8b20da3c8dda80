"""The engine's fast paths give what the plain computations give (row sums, row gathers, one-sort BH)."""

from __future__ import annotations

import numpy as np
import pytest

from gendex.stats._deseq2._backend import NumpyBackend
from gendex.stats._deseq2._results import independent_filtering
from gendex.stats._multitest import bh_adjust


def test_rows_and_rowsum_match_numpy():
    be = NumpyBackend()
    rng = np.random.default_rng(0)
    a = rng.gamma(1.0, 50.0, size=(300, 12))
    idx = np.sort(rng.choice(300, 120, replace=False))
    np.testing.assert_array_equal(be.rows(a, idx), a[idx])
    # a BLAS dot sums in another order than numpy's pairwise reduction: equal to rounding
    np.testing.assert_allclose(be.rowsum(a), a.sum(1), rtol=1e-14)
    a[3, 4] = np.nan
    a[5, 0] = np.inf
    s = be.rowsum(a)
    assert np.isnan(s[3]) and s[5] == np.inf


def _filtering_by_subset(base_mean, pvalue, alpha):
    """Independent filtering with BH computed afresh on each filtered subset (the definition)."""
    lower = float(np.mean(base_mean == 0))
    theta = np.linspace(lower, 0.95 if lower < 0.95 else 1.0, 50)
    cols = []
    for cut in np.quantile(base_mean, theta):
        col = np.full(base_mean.size, np.nan)
        use = base_mean >= cut
        col[use] = bh_adjust(pvalue[use])
        cols.append(col)
    return np.column_stack(cols)


@pytest.mark.parametrize("seed", [0, 1])
def test_independent_filtering_equals_bh_per_subset(seed):
    rng = np.random.default_rng(seed)
    g = 2000
    base_mean = np.round(rng.gamma(0.5, 40.0, g), 1)  # rounded: many tied means
    base_mean[:100] = 0.0
    pvalue = np.round(rng.beta(0.3, 1.0, g), 3)  # rounded: many tied p-values
    pvalue[rng.choice(g, 150, replace=False)] = np.nan
    padj, _, theta, table = independent_filtering(base_mean, pvalue, 0.1)
    ref = _filtering_by_subset(base_mean, pvalue, 0.1)
    j = int(np.flatnonzero(np.isclose(table["theta"], theta))[0])
    np.testing.assert_array_equal(padj, ref[:, j])
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(table["numRej"].to_numpy(), np.sum(ref < 0.1, axis=0))
