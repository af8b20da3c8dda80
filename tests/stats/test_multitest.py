import numpy as np

from gendex.stats import bh_adjust


def test_bh_matches_reference_values():
    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan])
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.5), "BH") -> 0.04 0.05333333 0.05333333 0.5
    np.testing.assert_allclose(bh_adjust(p)[:4], [0.04, 0.0533333333, 0.0533333333, 0.5], rtol=1e-8)
    assert np.isnan(bh_adjust(p)[4])


def test_bh_all_nan():
    assert np.isnan(bh_adjust([np.nan, np.nan])).all()
