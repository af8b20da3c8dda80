"""`datasets.simulate_classroom` regenerates the classroom homework's data (../shared/seeds/003) draw for draw."""

import numpy as np
import pytest

import gendex as gdx

# df_expr.head() as the homework prints it (seed 44): samples S01-S05, the first ten and the last ten genes
HEAD_FIRST = [
    [2.703283, 13.925822, 8.355345, 2.074732, 1.812259, 1.667333, 12.409141, 5.019294, 4.089832, 8.536002],
    [2.949598, 11.232153, 13.433076, 1.189799, 1.979275, 1.579362, 13.044639, 2.338486, 3.986011, 5.690107],
    [2.466550, 12.327434, 7.087745, 1.596691, 1.836656, 1.453915, 18.294748, 4.847640, 3.509057, 6.524596],
    [4.380852, 11.139415, 10.147750, 1.459345, 1.414977, 1.367162, 12.137341, 5.354844, 6.099626, 4.729234],
    [3.188087, 9.918421, 8.002543, 1.912038, 1.280222, 1.185378, 15.780576, 4.396150, 3.322813, 6.121251],
]
NAN = np.nan
HEAD_LAST = [
    [1.565173, 3.476716, 5.094963, 2.314342, 5.183206, 14.306271, 2.359026, 4.629968, 3.497944, 1.437714],
    [NAN, NAN, 4.486724, 2.591446, 3.469119, 11.405596, 2.140216, 4.702188, 3.271724, 2.471256],
    [2.570030, 1.807175, 4.083114, NAN, 3.105927, 12.160771, NAN, 4.152616, 3.307645, 1.607030],
    [2.121303, 3.450361, 6.553294, 4.162107, 2.856044, 15.102878, NAN, NAN, 3.355429, 1.463993],
    [2.551916, 3.400628, 4.730747, 2.872398, 3.376408, 11.082408, 2.853187, 4.947910, 3.224200, 1.623399],
]


@pytest.fixture(scope="module")
def homework():
    return gdx.datasets.simulate_classroom(100, 1000, 10, 4, 0.2, 0.05, random_state=44)


def test_reproduces_the_homeworks_printed_data(homework):
    assert homework.shape == (100, 1000)
    assert list(homework.obs_names[:2]) == ["S01", "S02"] and homework.var_names[-1] == "Gene01000"
    # printed to 6 decimals: agree to half a unit in the last place (values are at most ~20)
    np.testing.assert_allclose(homework.X[:5, :10], HEAD_FIRST, rtol=0, atol=5e-7)
    np.testing.assert_allclose(homework.X[:5, -10:], HEAD_LAST, rtol=0, atol=5e-7)
    cond = homework.obs["condition"]
    assert (cond.iloc[25:35] == "Control").all() and (cond == "Treatment").sum() == 50


def test_shifted_genes_and_missingness(homework):
    shifted = homework.var["is_shifted"].to_numpy()
    assert shifted.sum() == 10 and sorted(homework.var["shift_rank"][shifted]) == list(range(1, 11))
    treat = (homework.obs["condition"] == "Treatment").to_numpy()
    lx = np.log(homework.X)
    diff = np.nanmean(lx[treat], 0) - np.nanmean(lx[~treat], 0)
    # 50 vs 50 samples, noise sd 0.2: the mean difference has sd 0.04 -> 0.2 is five sd
    assert np.allclose(diff[shifted], 4, atol=0.2) and np.abs(diff[~shifted]).max() < 0.2
    assert abs(np.isnan(homework.X).mean() - 0.05) < 0.005  # 100,000 values: sd of the share is 0.0007
    assert homework.uns["simulate_classroom"]["random_state"] == 44


def test_no_missingness_skips_the_last_draw_and_zero_shift_is_null():
    a = gdx.datasets.simulate_classroom(20, 50, 5, 0.0, random_state=1)
    b = gdx.datasets.simulate_classroom(20, 50, 5, 3.0, random_state=1)
    assert not np.isnan(a.X).any() and not a.var["is_shifted"].any()
    assert (a.var["shift_rank"] > 0).sum() == 5  # the same genes are drawn, shifted by nothing
    unshifted = ~b.var["is_shifted"].to_numpy()
    np.testing.assert_array_equal(a.X[:, unshifted], b.X[:, unshifted])
    np.testing.assert_allclose(b.X[10:, ~unshifted], a.X[10:, ~unshifted] * np.exp(3.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_samples": 1}, "n_samples"), ({"n_shift": 200}, "n_shift"), ({"missing_p": 1.0}, "missing_p")],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gdx.datasets.simulate_classroom(**kwargs)
