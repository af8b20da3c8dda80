import numpy as np
import pytest

from gendex.stats import _size_factors
from gendex.stats._size_factors import size_factors_ratio


def _reference(counts: np.ndarray) -> np.ndarray:
    """The textbook formula in one piece: exp(median(log k - mean(log k))) over genes without zeros."""
    with np.errstate(divide="ignore"):
        logc = np.log(counts.astype(np.float64))
    geo = logc.mean(axis=0)
    ok = np.isfinite(geo)
    return np.exp(np.median(logc[:, ok] - geo[ok], axis=1))


@pytest.mark.parametrize("n_genes", [301, 300])  # an odd and an even number of usable genes
def test_blocked_threaded_size_factors_equal_the_formula(monkeypatch, n_genes):
    rng = np.random.default_rng(7)
    counts = rng.negative_binomial(5, 0.2, size=(9, n_genes)) + 1
    counts[:, :2] = 0  # two unusable genes ...
    counts = np.column_stack([counts, np.ones((9, 2), dtype=counts.dtype)])  # ... and two more usable ones
    expected = _reference(counts)
    monkeypatch.setattr(_size_factors, "_BLOCK", 50)  # many blocks in both passes
    for threads in (1, 3):
        np.testing.assert_allclose(size_factors_ratio(counts, n_threads=threads), expected, rtol=1e-13)


def test_size_factors_without_usable_gene_raise():
    counts = np.array([[0, 3], [4, 0], [2, 2]])
    with pytest.raises(ValueError, match="poscounts"):
        size_factors_ratio(counts)
