from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gendex.stats import ash, posterior_fdr


@pytest.fixture
def effects():
    rng = np.random.default_rng(0)
    n = 4000
    beta = np.where(rng.random(n) < 0.2, rng.normal(0, 2, n), 0.0)
    se = rng.uniform(0.2, 1.0, n)
    return beta, beta + rng.normal(0, se), se


def test_ash_estimates_null_proportion_and_shrinks(effects):
    beta, bhat, se = effects
    post = ash(bhat, se)
    assert post.prior_sds[0] == 0
    assert post.prior_weights.sum() == pytest.approx(1.0)
    assert 0.7 < post.prior_weights[0] < 0.9  # truth: 0.8 null
    # the posterior mean is closer to the truth than the estimate
    assert np.mean((post.mean - beta) ** 2) < 0.6 * np.mean((bhat - beta) ** 2)
    assert np.all(np.abs(post.mean) <= np.abs(bhat) + 1e-12)
    assert np.all(post.sd > 0)


def test_ash_tail_probabilities_and_quantiles(effects):
    _, bhat, se = effects
    post = ash(bhat, se)
    lfsr = post.lfsr()
    # min(P(beta >= 0), P(beta <= 0)): both include the point mass at zero, so null-like genes get lfsr near 1
    assert np.all((lfsr >= post.weights[:, 0] - 1e-9) & (lfsr <= 1 + 1e-12))
    assert np.all(lfsr <= 0.5 + post.weights[:, 0] + 1e-9)
    for q in (0.05, 0.5, 0.95):
        x = post.quantile(q)
        at = post.cdf(x)
        below = post.prob_less(x)
        assert np.all(below <= q + 1e-6) and np.all(at >= q - 1e-6)
    lo, hi = post.quantile(0.05), post.quantile(0.95)
    assert np.all(lo <= hi)
    # genes with most posterior mass at zero get an interval containing zero exactly
    null_like = post.weights[:, 0] > 0.9
    assert null_like.any() and np.all((lo[null_like] <= 0) & (hi[null_like] >= 0))
    p_big = post.prob_greater(0.5) + post.prob_less(-0.5)
    assert np.all((p_big >= 0) & (p_big <= 1 - post.weights[:, 0] + 1e-9))
    # at 0 the point mass separates the strict and the inclusive tail by exactly its posterior weight
    np.testing.assert_allclose(post.cdf(0.0) - post.prob_less(0.0), post.weights[:, 0], atol=1e-12)
    np.testing.assert_array_equal(lfsr, np.minimum(1.0 - post.prob_less(0.0), post.cdf(0.0)))


def test_ash_single_normal_prior_matches_conjugate_formula():
    bhat = np.array([1.0, -2.0, 0.3])
    se = np.array([0.5, 1.0, 2.0])
    post = ash(bhat, se, prior_sds=[1.5], null_weight=1.0)
    shrink = 1.5**2 / (1.5**2 + se**2)
    np.testing.assert_allclose(post.mean, shrink * bhat)
    np.testing.assert_allclose(post.sd, np.sqrt(shrink) * se)
    np.testing.assert_allclose(post.cdf(0.2), stats.norm.cdf(0.2, shrink * bhat, np.sqrt(shrink) * se))


def test_ash_calibration_of_lfsr(effects):
    beta, bhat, se = effects
    post = ash(bhat, se)
    lfsr = post.lfsr()
    called = lfsr < 0.05
    wrong_sign = np.sign(post.mean[called]) != np.sign(beta[called])
    assert wrong_sign.mean() <= 0.08


def test_ash_input_errors():
    with pytest.raises(ValueError, match="same length"):
        ash([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        ash([1.0, np.nan], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        ash([1.0, 2.0], [1.0, 0.0])


def test_posterior_fdr():
    p_null = np.array([0.5, 0.01, np.nan, 0.2, 0.03])
    q = posterior_fdr(p_null)
    np.testing.assert_allclose(q[[1, 4, 3, 0]], [0.01, 0.02, 0.08, 0.185])
    assert np.isnan(q[2])


def test_ash_is_the_same_with_any_number_of_blas_threads():
    """The mixture weights' sums avoid the threaded BLAS: the same numbers with 1 or 2 threads."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(1)
    n = 20_000
    se = rng.uniform(0.2, 1.0, n)
    betahat = np.where(rng.random(n) < 0.2, rng.normal(0, 2, n), 0.0) + rng.normal(0, se)
    fits = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            fits.append(ash(betahat, se))
    np.testing.assert_array_equal(fits[0].prior_weights, fits[1].prior_weights)
    np.testing.assert_array_equal(fits[0].mean, fits[1].mean)
