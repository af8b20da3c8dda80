"""The compiled (numba) kernels of the DESeq2 engine against the batched numpy code they replace."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

import gendex as gdx
from gendex.stats import deseq2_fit
from gendex.stats._deseq2 import _backend, _jit, _kernels


def _vector(fn, x: np.ndarray) -> np.ndarray:
    from numba import njit

    @njit(error_model="numpy")
    def loop(v, out):
        for j in range(v.size):
            out[j] = fn(v[j])

    out = np.empty_like(x)
    loop(x, out)
    return out


@pytest.mark.parametrize("n", [1, 5, 7, 8, 9, 12, 40, 127, 128, 129, 300, 1000, 10_007])
def test_pairwise_sum_has_numpys_bits(n):
    a = np.random.default_rng(n).standard_normal((4, n)) * 1e3
    np.testing.assert_array_equal([_jit._pairwise(row, n) for row in a], a.sum(1))


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("lgamma_int", [False, True])
def test_dense_special_sums_have_numpys_bits(order, lgamma_int):
    rng = np.random.default_rng(1)
    y = np.asarray(rng.negative_binomial(2, 0.05, size=(300, 12)), dtype=float, order=order)
    r = rng.gamma(1.0, 5.0, 300)
    be = _backend.get_backend("cpu")
    for fun, sp in ((be.lgamma, special.gammaln), (be.digamma, special.digamma)):
        if lgamma_int and fun is not be.lgamma:
            continue
        ref = sp(y + r[:, None]) - sp(r)[:, None]
        if lgamma_int:
            ref = ref - special.gammaln(y + 1.0)
        np.testing.assert_array_equal(_kernels.dense_diff_sum(fun, y, r, lgamma_int=lgamma_int), ref.sum(1))


def test_distinct_count_sums_have_bincount_bits(monkeypatch):
    rng = np.random.default_rng(2)
    y = rng.poisson(rng.gamma(0.5, 6.0, (200, 1)), size=(200, 60)).astype(float)
    r = rng.gamma(1.0, 5.0, 120)
    rows = np.sort(rng.choice(200, 120, replace=False))
    be = _backend.get_backend("cpu")
    fast = _kernels.CountSums(y)
    sub = fast.subset(rows[::2])
    out_fast = [fast.sum_diff(be.digamma, r, rows), sub.sum_diff(be.lgamma, r[:60], np.arange(60))]
    monkeypatch.setattr(_jit, "ENABLED", False)
    slow = _kernels.CountSums(y)
    out_slow = [slow.sum_diff(be.digamma, r, rows), slow.subset(rows[::2]).sum_diff(be.lgamma, r[:60], np.arange(60))]
    for a, b in zip(out_fast, out_slow, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [40, 61, 1000])
def test_counted_distinct_values_equal_sorted_ones(monkeypatch, n):
    # the compiled table counts small integer counts and sorts rows with large ones: the same values either way
    rng = np.random.default_rng(n)
    y = rng.negative_binomial(1, rng.uniform(1e-5, 0.5, (200, 1)), size=(200, n)).astype(float)
    y[0] = 0.0
    y[1, :5] = 1e12  # far beyond the table: sorted
    y[2, 3] = 2.0**40
    fast = _kernels.CountSums(y)
    monkeypatch.setattr(_jit, "ENABLED", False)
    slow = _kernels.CountSums(y)
    for name in ("vals", "mult", "gene", "offsets"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    assert fast.worth_it == slow.worth_it


def test_vector_log_is_within_one_ulp():
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [
            np.exp(rng.uniform(-700, 700, 20_000)),
            1.0 + rng.uniform(-1e-6, 1e-6, 2_000),
            rng.uniform(0.70, 0.72, 2_000),  # around the sqrt(2)/2 split
            rng.uniform(1.40, 1.43, 2_000),
            rng.uniform(1e-320, 1e-308, 500),  # subnormal
        ]
    )
    ours = _vector(_jit._vlog, x)
    ref = np.array([math.log(v) for v in x])  # glibc's log: correctly rounded in all but rare cases
    assert np.max(np.abs(ours - ref) / np.spacing(np.abs(ref) + 1e-300)) <= 2.0
    xs = np.exp(rng.uniform(math.log(1e-18), math.log(1e12), 20_000))
    ours = _vector(_jit._vlog1p, xs)
    ref = np.log1p(xs)
    assert np.max(np.abs(ours - ref) / np.spacing(ref)) <= 2.0
    special_vals = np.array([1.0, 0.0, -1.0, np.inf, np.nan, 2.0])
    np.testing.assert_array_equal(
        _vector(_jit._vlog, special_vals), [0.0, -np.inf, np.nan, np.inf, np.nan, math.log(2)]
    )


def test_vector_exp_is_within_one_ulp():
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            rng.uniform(-708.0, 709.7, 20_000),
            rng.uniform(-1.0, 1.0, 5_000),
            (np.arange(-40, 41) + 0.5) * math.log(2.0),  # around the rounding of x / log(2)
        ]
    )
    ours = _vector(_jit._vexp, x)
    ref = np.array([math.exp(v) for v in x])  # glibc's exp: correctly rounded in all but rare cases
    assert np.max(np.abs(ours - ref) / np.spacing(ref)) <= 1.0
    sub = rng.uniform(-745.1, -708.4, 2_000)  # subnormal results: within one unit of the smallest subnormal
    assert np.max(np.abs(_vector(_jit._vexp, sub) - np.exp(sub))) <= 5e-324
    special_vals = np.array([0.0, -0.0, 709.79, 1e4, np.inf, -746.0, -1e4, -np.inf, np.nan])
    np.testing.assert_array_equal(
        _vector(_jit._vexp, special_vals), [1.0, 1.0, np.inf, np.inf, np.inf, 0.0, 0.0, 0.0, np.nan]
    )


def test_compiled_irls_agrees_with_numpy_to_rounding(monkeypatch):
    # from 40 samples IRLS runs gene by gene in one compiled loop (vectorised exp/log, its own order of sums): the
    # same iterations and, to rounding, the same coefficients, covariances and hat values as the numpy kernel,
    # also for genes that stop on a coefficient beyond 30 (counts of 1e13 and more), a NaN dispersion, a start far off
    from gendex.stats._deseq2._glm import _Ctx

    n = 60
    rng = np.random.default_rng(6)
    counts, design = _cohort(n, n_genes=200, seed=4)
    x = np.column_stack([design, rng.normal(size=n)])  # a continuous covariate: p = 3
    y = counts.T.astype(float)
    y[:3] = y[:3] * 1e13 + 1e13  # log means beyond 30
    y[10:15, design[:, 1] == 1] = 0.0  # all zero in one group
    sf = np.exp(rng.normal(0.0, 0.3, n))
    alpha = rng.gamma(2.0, 0.05, y.shape[0])
    alpha[3:5] = np.nan
    ctx = _Ctx(x, sf, min_mu=0.5, min_disp=1e-8, max_disp=10.0, beta_tol=1e-8, device="cpu")
    beta0 = np.log(y / sf + 0.1) @ ctx.pinv_t
    beta0[5:10] += 3.0
    a = _kernels.fit_beta(ctx.ops, y, ctx.sf, alpha, beta0, ctx.ridge)
    monkeypatch.setattr(ctx.ops, "jit", False)
    b = _kernels.fit_beta(ctx.ops, y, ctx.sf, alpha, beta0, ctx.ridge)
    np.testing.assert_array_equal(a.iters, b.iters)
    assert np.all(a.iters[:5] == 100) and np.all(a.iters[5:] < 100)
    ok = a.iters < 100
    np.testing.assert_allclose(a.beta[ok], b.beta[ok], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.cov[:, ok], b.cov[:, ok], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(a.hat[ok], b.hat[ok], rtol=1e-9, atol=1e-14)
    np.testing.assert_array_equal(a.loglik_const, b.loglik_const)


@pytest.mark.parametrize("digamma", [False, True])
@pytest.mark.parametrize("r", [1e-4, 0.3, 1.0, 7.5, 9.999, 10.0, 42.0, 1e4, 1e8])
def test_gamma_differences_as_accurate_as_scipy(digamma, r):
    vals = np.concatenate([np.arange(0.0, 30.0), np.random.default_rng(4).integers(0, 10**6, 100).astype(float)])
    out = np.empty_like(vals)
    _jit._gamma_diffs(_jit.SPECIAL, vals, vals.size, r, digamma, out)
    fn = special.digamma if digamma else special.gammaln
    ref = fn(vals + r) - fn(r)
    # both are differences of two function values: the rounding error is relative to the larger one
    scale = np.abs(fn(vals + r)) + np.abs(fn(r))
    assert np.all(np.abs(out - ref) <= 8e-16 * scale)
    assert out[0] == 0.0


def _cohort(n: int, n_genes: int = 400, seed: int = 0):
    ad = gdx.datasets.simulate_counts(n_samples=n, n_genes=n_genes, random_state=seed)
    b = (ad.obs["condition"] == "B").to_numpy(float)
    return np.asarray(ad.X), np.column_stack([np.ones(n), b])


def _fields(fit):
    return {
        k: getattr(fit, k)
        for k in ("genewise_dispersions", "dispersions", "beta", "beta_se", "log_likelihood", "max_cooks")
    }


def test_few_samples_bit_identical_to_numpy_kernels(monkeypatch):
    # below 40 samples the compiled kernels replace single numpy steps with the same operations in the same order
    counts, design = _cohort(10)
    a = _fields(deseq2_fit(counts, design))
    monkeypatch.setattr(_jit, "ENABLED", False)
    b = _fields(deseq2_fit(counts, design))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_compiled_line_search_agrees_with_numpy_to_rounding(monkeypatch):
    # from 40 samples the line search runs gene by gene in one compiled loop: other rounding (vectorised log,
    # series for lgamma/digamma), so a stopping test (gain < 1e-6 per accepted step) can flip for a few genes, which
    # then stop one step apart; both are converged estimates (see test_distinct_count_sums_match_dense_sums)
    counts, design = _cohort(60)
    a = deseq2_fit(counts, design)
    monkeypatch.setattr(_jit, "ENABLED", False)
    b = deseq2_fit(counts, design)
    same = (a.genewise_iters == b.genewise_iters) & (a.map_iters == b.map_iters)
    assert same.mean() > 0.97
    np.testing.assert_allclose(a.genewise_dispersions[same], b.genewise_dispersions[same], rtol=1e-8)
    np.testing.assert_allclose(a.dispersions[same], b.dispersions[same], rtol=1e-8)
    np.testing.assert_allclose(np.log(a.dispersions), np.log(b.dispersions), rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n", [10, 60])
def test_threads_give_identical_bits(n):
    # each gene's arithmetic is its own (the BLAS products of the GLM may round by batch size: same batches here)
    counts, design = _cohort(n, n_genes=300, seed=3)
    a = _fields(deseq2_fit(counts, design, n_threads=1, chunk_size=64))
    b = _fields(deseq2_fit(counts, design, n_threads=2, chunk_size=64))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
