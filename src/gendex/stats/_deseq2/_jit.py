"""Compiled kernels (numba) behind the numpy backend of the DESeq2 engine: the same arithmetic, fewer passes.

The batched kernels (``_kernels``, ``_disp_kernels``) are numpy vector operations over genes. Where numpy is
slow for them, a compiled loop does the step instead: the special-function sums of the line search and the GLM
(scipy's ufuncs cost ~4x the bare function calls here, with two temporaries per call and evaluations on zero
counts), the gathers and ``bincount`` of the distinct-count sums, and the sandwich covariance. Each kernel does
one of those steps **with the same operations in the same order**, so that the engine's results are bit-for-bit
those of the numpy code (tested):

* no ``fastmath``; only IEEE-exact operations (``+ - * /``), which give the same bits on every CPU;
  transcendental functions other than lgamma/digamma stay in numpy (its SIMD ``log`` may differ from libm's);
* ``lgamma`` and ``digamma`` are scipy's own (``scipy.special.cython_special``), called through their C addresses,
  which give the bits ``scipy.special.gammaln`` / ``digamma`` give;
* sums over samples use numpy's pairwise summation, reimplemented (:func:`_pairwise`); sums over distinct counts
  are sequential in increasing count, as ``np.bincount``;
* each gene's arithmetic depends on that gene's data only, so results do not depend on chunking or threads (the
  kernels release the GIL; the driver runs gene blocks in threads).

From :data:`MIN_SAMPLES_DISTINCT` samples on, whole steps run gene by gene in one compiled loop instead (the line
search :func:`fit_disp_rows`, IRLS :func:`fit_beta_rows`), with a vectorisable ``log``/``exp`` of their own and
sums over samples in 8 interleaved partial sums (:func:`_dot8`): the numpy kernels' results to rounding, the same
bits on every CPU and for any thread count (tested).

Compiled on first use and cached next to this file (``cache=True``); see the benchmark notes for the cost.
"""

from __future__ import annotations

import math
import os

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import get_cython_function_address, intrinsic

#: set ``GENDEX_DESEQ2_JIT=0`` to run the batched numpy kernels instead (reference path, and torch's)
ENABLED = os.environ.get("GENDEX_DESEQ2_JIT", "1") != "0"

_LGAMMA = get_cython_function_address("scipy.special.cython_special", "gammaln")
_DIGAMMA = get_cython_function_address("scipy.special.cython_special", "__pyx_fuse_1psi")  # the float64 digamma
#: C addresses of scipy's ``gammaln`` and ``digamma``, passed to the kernels at run time (a compiled function that
#: captured them as constants could not be cached)
SPECIAL = np.array([_LGAMMA, _DIGAMMA], dtype=np.int64)


@intrinsic
def _call_special(typingctx, addr, x):
    """Call the cython ``double f(double, int skip_dispatch)`` at address ``addr``."""
    sig = types.float64(types.int64, types.float64)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.DoubleType(), [ir.DoubleType(), ir.IntType(32)])
        fptr = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fptr, [args[1], ir.Constant(ir.IntType(32), 0)])

    return sig, codegen


@intrinsic
def _f2i(typingctx, x):
    """The bits of a float64 as int64."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def _i2f(typingctx, x):
    """The float64 with the given bits."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


_LN2_HI = 0.6931471803691238  # log(2) rounded to 32 significant bits: k * _LN2_HI is exact for |k| < 2^21
_LN2_LO = 1.9082149292705877e-10  # log(2) - _LN2_HI
_SQRT2 = 1.4142135623730951
_TINY = 2.2250738585072014e-308  # the smallest normal float64
# 2 / (2k + 1): log(m) = 2 atanh(s) = 2s + 2s (s^2 / 3 + s^4 / 5 + ...), s = (m - 1) / (m + 1), |s| <= 0.172
_A1, _A2, _A3, _A4, _A5, _A6, _A7, _A8, _A9, _A10, _A11, _A12 = (2.0 / (2 * k + 1) for k in range(1, 13))


@njit(cache=True, nogil=True, error_model="numpy")
def _vlog(x):
    """Natural log in IEEE arithmetic without branches or library calls, so that loops of it vectorise.

    ``x = 2^k m`` with ``m`` in ``[sqrt(2)/2, sqrt(2))``; ``log(m)`` from the series of ``atanh`` in
    ``s = f / (2 + f)``, ``f = m - 1``, arranged as ``f - f^2/2 + s (f^2/2 + R)`` for accuracy (within 1 ulp of
    the correctly rounded value, tested). The same bits on every CPU and SIMD width (no ``fastmath``: no FMA
    contraction, no reassociation). NaN, 0, negative and infinite arguments give what ``log`` gives.
    """
    small = x < _TINY  # subnormal: scale into the normal range first
    xs = x * 18014398509481984.0 if small else x  # 2^54
    i = _f2i(xs)
    mant = i & 0x000FFFFFFFFFFFFF
    big = np.int64(_i2f(mant | 0x3FF0000000000000) > _SQRT2)
    k = ((i >> 52) & 0x7FF) - 1023 + big
    dk = float(k) - (54.0 if small else 0.0)
    f = _i2f(mant | ((1023 - big) << 52)) - 1.0
    s = f / (2.0 + f)
    z = s * s
    r = z * (
        _A1
        + z
        * (
            _A2
            + z
            * (
                _A3
                + z
                * (_A4 + z * (_A5 + z * (_A6 + z * (_A7 + z * (_A8 + z * (_A9 + z * (_A10 + z * (_A11 + z * _A12))))))))
            )
        )
    )
    hfsq = 0.5 * f * f
    res = dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + dk * _LN2_LO)) - f)
    res = -math.inf if x == 0.0 else res
    res = math.nan if (x < 0.0) | (x != x) else res
    return math.inf if x == math.inf else res


@njit(cache=True, nogil=True, error_model="numpy")
def _vlog1p(x):
    """``log(1 + x)`` from :func:`_vlog` with the rounding of ``1 + x`` corrected (within ~1 ulp, tested)."""
    u = 1.0 + x
    return _vlog(u) - ((u - 1.0) - x) / u


@njit(cache=True, nogil=True)
def _pw_block(a, lo, n):
    """The pairwise sum numpy uses, of ``a[lo:lo + n]`` for ``n <= 128``: 8 partial sums, then the rest in order."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = lo + 8
    stop = lo + n - (n % 8)
    while i < stop:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < lo + n:
        res += a[i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def _pw_tree(a, n):
    """The recursion numpy uses for ``n > 128`` (halves rounded down to a multiple of 8), with an explicit stack.

    (A self-recursive function would do, but numba's on-disk cache of recursive functions crashes.)
    """
    depth = 64
    s_lo = np.empty(depth, dtype=np.int64)
    s_n = np.empty(depth, dtype=np.int64)
    s_stage = np.empty(depth, dtype=np.int64)
    s_left = np.empty(depth)
    top = 1
    s_lo[0], s_n[0], s_stage[0] = 0, n, 0
    result = 0.0
    while top > 0:
        f = top - 1
        m = s_n[f]
        if m <= 128 or s_stage[f] == 2:
            if m <= 128:
                val = _pw_block(a, s_lo[f], m)
            else:
                val = s_left[f] + result  # ``result`` holds the right half just returned
            top -= 1
            if top > 0 and s_stage[top - 1] == 1:
                s_left[top - 1] = val
            result = val
            continue
        m2 = m // 2
        m2 -= m2 % 8
        if s_stage[f] == 0:  # left half first
            s_stage[f] = 1
            s_lo[top], s_n[top], s_stage[top] = s_lo[f], m2, 0
        else:  # then the right half
            s_stage[f] = 2
            s_lo[top], s_n[top], s_stage[top] = s_lo[f] + m2, m - m2, 0
        top += 1
    return result


@njit(cache=True, nogil=True)
def _pairwise(a, n):
    """``a[:n].sum()`` with numpy's pairwise summation (the same bits as numpy's row sums)."""
    if n <= 128:
        return _pw_block(a, 0, n)
    return _pw_tree(a, n)


@njit(cache=True, nogil=True, error_model="numpy")
def _dot8(a, b, n):
    """``sum_j a[j] b[j]`` in 8 interleaved partial sums: no temporaries, and fast.

    The sums over samples of the kernels used from :data:`MIN_SAMPLES_DISTINCT` samples (line search, IRLS), which
    agree with the numpy kernels to rounding, not bit for bit. Not numpy's order, but a fixed one: the same bits on
    every CPU and for any thread count.
    """
    r0 = r1 = r2 = r3 = r4 = r5 = r6 = r7 = 0.0
    m = n - n % 8
    for i in range(0, m, 8):
        r0 += a[i] * b[i]
        r1 += a[i + 1] * b[i + 1]
        r2 += a[i + 2] * b[i + 2]
        r3 += a[i + 3] * b[i + 3]
        r4 += a[i + 4] * b[i + 4]
        r5 += a[i + 5] * b[i + 5]
        r6 += a[i + 6] * b[i + 6]
        r7 += a[i + 7] * b[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(m, n):
        res += a[i] * b[i]
    return res


@njit(cache=True, nogil=True)
def _sum8(a, n):
    """``a[:n].sum()`` in 8 partial sums: the order of :func:`_dot8`, numpy's pairwise block (:func:`_pw_block`)."""
    return _pw_block(a, 0, n)


# ----------------------------------------------------------------------------------------------------------------
# p x p algebra, structure-of-arrays layout ``(P, G)`` (entry (i, j), i >= j, at row i (i + 1) / 2 + j, the order of
# ``DesignOps.pairs``); the loop body is the numpy code of ``DesignOps`` for one gene
# ----------------------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _kk(i, j):
    if i < j:
        i, j = j, i
    return i * (i + 1) // 2 + j


@njit(cache=True, nogil=True)
def sandwich(ainv, info, p):
    """``DesignOps.sandwich``: ``A^-1 I A^-1``."""
    nk, g = ainv.shape
    out = np.zeros((nk, g))
    t = np.zeros((p, p))
    for c in range(g):
        for i in range(p):
            for j in range(p):
                v = 0.0
                for m in range(p):
                    v = v + ainv[_kk(i, m), c] * info[_kk(m, j), c]
                t[i, j] = v
        for i in range(p):
            for j in range(i + 1):
                v = 0.0
                for m in range(p):
                    v = v + t[i, m] * ainv[_kk(m, j), c]
                out[_kk(i, j), c] = v
    return out


# ----------------------------------------------------------------------------------------------------------------
# sums of special-function differences over samples
# ----------------------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def dense_diff(addr, y, r, lgamma_int, seq):
    """``sum_j f(y_j + r) - f(r)`` per row of ``y`` (``f`` at ``addr``), minus ``sum_j lgamma(y_j + 1)`` if asked.

    As numpy's ``(f(y + r[:, None]) - f(r)[:, None]).sum(1)`` (``- lgamma_int(y)`` inside the sum when
    ``lgamma_int``); a zero count contributes exactly 0, so ``f`` is not evaluated there. numpy sums the rows of a
    C-ordered array pairwise and those of an F-ordered one in sample order: ``seq`` says which (``y``'s layout).
    """
    g, n = y.shape
    out = np.empty(g)
    t = np.empty(n)
    for c in range(g):
        rc = r[c]
        fr = _call_special(addr, rc)
        for j in range(n):
            yj = y[c, j]
            if yj == 0.0:
                t[j] = 0.0  # f(0 + r) - f(r) - lgamma(1) = 0 - 0
            elif lgamma_int:
                t[j] = (_call_special(addr, yj + rc) - fr) - _call_special(addr, yj + 1.0)
            else:
                t[j] = _call_special(addr, yj + rc) - fr
        if seq:
            acc = 0.0
            for j in range(n):
                acc += t[j]
            out[c] = acc
        else:
            out[c] = _pairwise(t, n)
    return out


@njit(cache=True, nogil=True)
def distinct_diff(addr, vals, mult, offsets, rows, r):
    """``sum_k (f(v_k + r) - f(r)) m_k`` over the distinct counts ``v_k`` of each gene ``rows[i]`` (CSR layout).

    The terms of a gene are added in increasing count from 0, as ``np.bincount`` does.
    """
    g = rows.shape[0]
    out = np.empty(g)
    for i in range(g):
        gene = rows[i]
        ri = r[i]
        fr = _call_special(addr, ri)
        s = 0.0
        for k in range(offsets[gene], offsets[gene + 1]):
            s += (_call_special(addr, vals[k] + ri) - fr) * mult[k]
        out[i] = s
    return out


# ----------------------------------------------------------------------------------------------------------------
# the dispersion line search (R's fitDisp), one gene at a time, in one compiled loop
# ----------------------------------------------------------------------------------------------------------------
#: from this many samples on, the lgamma/digamma sums run over each gene's distinct counts (``_kernels.count_sums``)
MIN_SAMPLES_DISTINCT = 40
LOG_ALPHA_LO = -30.0
LOG_ALPHA_HI = 10.0


@njit(cache=True, nogil=True, error_model="numpy")
def _hist_size(y):
    """Length of the counting table :func:`_distinct` needs for the rows of ``y`` (see there)."""
    g, n = y.shape
    top = 0.0
    for i in range(g):
        for j in range(n):
            v = y[i, j]
            top = v if v > top else top
    return int(min(top, 32.0 * n + 1024.0)) + 1


@njit(cache=True, nogil=True, error_model="numpy")
def _distinct(yrow, n, vals, mult, hist):
    """Distinct positive values of ``yrow`` in increasing order, with multiplicities.

    Returns their number and the number of distinct values with zero. Non-negative integer counts up to
    ``len(hist) - 1`` (at most ``32 n + 1024``: the scan of the table then costs less than a sort) are counted
    in ``hist`` (left zeroed), others sorted: the same values and multiplicities either way.
    """
    top = 0.0
    exact = True
    for j in range(n):
        v = yrow[j]
        top = v if v > top else top
        exact = exact and v >= 0.0 and v == math.floor(v)
    nd = 0
    n_all = 0
    if exact and top < hist.shape[0]:
        for j in range(n):
            hist[int(yrow[j])] += 1
        for v in range(int(top) + 1):
            c = hist[v]
            if c > 0:
                n_all += 1
                hist[v] = 0
                if v > 0:
                    vals[nd] = float(v)
                    mult[nd] = float(c)
                    nd += 1
        return nd, n_all
    ys = np.sort(yrow[:n])
    j = 0
    while j < n:
        v = ys[j]
        k = j + 1
        while k < n and ys[k] == v:
            k += 1
        n_all += 1
        if v > 0:
            vals[nd] = v
            mult[nd] = float(k - j)
            nd += 1
        j = k
    return nd, n_all


@njit(cache=True, nogil=True, error_model="numpy")
def count_table(y):
    """Each row's distinct positive values and multiplicities by :func:`_distinct` (``_kernels.CountSums``).

    Returns ``(vals, mult, offsets, n_all)``: CSR arrays and the number of distinct values with zeros.
    """
    g, n = y.shape
    hist = np.zeros(_hist_size(y), dtype=np.int64)
    vals = np.empty(g * n)
    mult = np.empty(g * n)
    offsets = np.zeros(g + 1, dtype=np.int64)
    n_all = 0
    for i in range(g):
        at = offsets[i]
        nd, na = _distinct(y[i], n, vals[at:], mult[at:], hist)
        offsets[i + 1] = at + nd
        n_all += na
    end = offsets[g]
    return vals[:end].copy(), mult[:end].copy(), offsets, n_all


_HALF_LOG_2PI = 0.9189385332046728
_BIG = 10.0  # from here on, the asymptotic series below are exact to double precision
# Stirling: lgamma(x) = (x - 1/2) log x - x + log(2 pi)/2 + sum_k B_2k / (2k (2k - 1) x^(2k - 1))
_L1, _L2, _L3, _L4 = 1.0 / 12.0, -1.0 / 360.0, 1.0 / 1260.0, -1.0 / 1680.0
_L5, _L6, _L7, _L8 = 1.0 / 1188.0, -691.0 / 360360.0, 1.0 / 156.0, -3617.0 / 122400.0
# digamma(x) = log x - 1/(2x) - sum_k B_2k / (2k x^2k)
_D1, _D2, _D3, _D4 = 1.0 / 12.0, -1.0 / 120.0, 1.0 / 252.0, -1.0 / 240.0
_D5, _D6, _D7, _D8 = 1.0 / 132.0, -691.0 / 32760.0, 1.0 / 12.0, -3617.0 / 8160.0


@njit(cache=True, nogil=True, error_model="numpy")
def _lgamma_big(x):
    """``lgamma(x)`` for ``x >= 10`` by Stirling's series (8 terms: truncation < 2e-18), no library calls."""
    z = 1.0 / x
    z2 = z * z
    ser = z * (_L1 + z2 * (_L2 + z2 * (_L3 + z2 * (_L4 + z2 * (_L5 + z2 * (_L6 + z2 * (_L7 + z2 * _L8)))))))
    return ((x - 0.5) * _vlog(x) - x) + _HALF_LOG_2PI + ser


@njit(cache=True, nogil=True, error_model="numpy")
def _digamma_big(x):
    """``digamma(x)`` for ``x >= 10`` by its asymptotic series (truncation < 4e-18), no library calls."""
    z = 1.0 / x
    z2 = z * z
    ser = z2 * (_D1 + z2 * (_D2 + z2 * (_D3 + z2 * (_D4 + z2 * (_D5 + z2 * (_D6 + z2 * (_D7 + z2 * _D8)))))))
    return (_vlog(x) - 0.5 * z) - ser


@njit(cache=True, nogil=True, error_model="numpy")
def _gamma_diffs(sp, vals, nv, r, digamma, out):
    """``out[k] = f(vals[k] + r) - f(r)`` for non-negative integer ``vals`` (``f`` = lgamma, or digamma).

    ``vals[k] + r >= 10``: the series above (vectorised), minus ``f(r)`` by the same series when ``r >= 10`` and by
    scipy's function otherwise. Below 10 (so ``vals[k] <= 9``), the exact recurrences
    ``lgamma(v + r) - lgamma(r) = log(r (r + 1) ... (r + v - 1))`` and
    ``digamma(v + r) - digamma(r) = 1/r + ... + 1/(r + v - 1)``. A zero count gives exactly 0.
    """
    if r >= _BIG:
        fr = _digamma_big(r) if digamma else _lgamma_big(r)
    else:
        fr = _call_special(sp[1] if digamma else sp[0], r)
    if digamma:
        for k in range(nv):  # vectorised
            out[k] = _digamma_big(vals[k] + r) - fr
    else:
        for k in range(nv):
            out[k] = _lgamma_big(vals[k] + r) - fr
    if r < _BIG:
        for k in range(nv):
            v = vals[k]
            if v + r < _BIG:
                acc = 0.0 if digamma else 1.0
                for i in range(int(v)):
                    if digamma:
                        acc += 1.0 / (r + i)
                    else:
                        acc *= r + i
                out[k] = acc if digamma else _vlog(acc)
    for k in range(nv):
        if vals[k] == 0.0:
            out[k] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def _special_sum(sp, yrow, n, r, nd, vals, mult, use_sums, digamma, t):
    """``sum_j f(y_j + r) - f(r)`` (lgamma or digamma): over distinct counts in increasing order, or pairwise."""
    if use_sums:
        _gamma_diffs(sp, vals, nd, r, digamma, t)
        s = 0.0
        for k in range(nd):
            s += t[k] * mult[k]
        return s
    _gamma_diffs(sp, yrow, n, r, digamma, t)
    return _sum8(t, n)


@njit(cache=True, nogil=True, error_model="numpy")
def _xtwx_into(xxt, w, n, t, out):
    """``X' diag(w) X`` packed (``xxt`` (P, n): products of design columns), each entry by :func:`_dot8`."""
    for k in range(xxt.shape[0]):
        out[k] = _dot8(xxt[k], w, n)


@njit(cache=True, nogil=True, error_model="numpy")
def _chol_into(a, p, low):
    """Lower Cholesky factor of packed ``a`` (NaN where not positive definite), as ``DesignOps.chol``."""
    for j in range(p):
        s = a[_kk(j, j)]
        for m in range(j):
            s = s - low[_kk(j, m)] ** 2
        d = math.sqrt(s) if s > 0 else math.nan
        low[_kk(j, j)] = d
        for i in range(j + 1, p):
            v = a[_kk(i, j)]
            for m in range(j):
                v = v - low[_kk(i, m)] * low[_kk(j, m)]
            low[_kk(i, j)] = v / d


@njit(cache=True, nogil=True, error_model="numpy")
def _inv_chol_into(low, p, linv, inv):
    """Packed inverse of ``L L'``, as ``DesignOps.inv_from_chol``."""
    for j in range(p):
        linv[_kk(j, j)] = 1.0 / low[_kk(j, j)]
        for i in range(j + 1, p):
            v = 0.0
            for m in range(j, i):
                v = v + low[_kk(i, m)] * linv[_kk(m, j)]
            linv[_kk(i, j)] = -v / low[_kk(i, i)]
    for i in range(p):
        for j in range(i + 1):
            v = 0.0
            for m in range(i, p):
                v = v + linv[_kk(m, i)] * linv[_kk(m, j)]
            inv[_kk(i, j)] = v


@njit(cache=True, nogil=True, error_model="numpy")
def _log_post(sp, a, gene, buf):
    """``_disp_kernels.log_posterior`` for one gene; leaves ``w``, ``low`` and ``l1p`` for the derivative.

    ``gene``: the gene's data and constants, ``buf``: work arrays (see :func:`fit_disp_rows`).
    """
    yrow, murow, n, xxt, xxqt, p, use_cr, nd, vals, mult, use_sums, use_prior, pm, pv, sumy = gene
    t, t2, w, l1p, iu, b, low, ws = buf
    alpha = math.exp(a)
    r = 1.0 / alpha
    lg = _special_sum(sp, yrow, n, r, nd, vals, mult, use_sums, False, t)
    for j in range(n):  # vectorised: no calls, no branches
        m = murow[j]
        ma = m * alpha
        u = 1.0 + ma
        inv = 1.0 / u
        lv = _vlog(u) - ((u - 1.0) - ma) * inv  # log1p(mu alpha), as _vlog1p
        iu[j] = inv
        l1p[j] = lv
        w[j] = m * inv  # 1 / (1/mu + alpha)
    # sum y log(mu + r) = log(r) sum(y) + sum y log(1 + mu alpha): one log per sample instead of two
    out = lg - (math.log(r) * sumy + _dot8(yrow, l1p, n))
    if use_cr:
        _xtwx_into(xxt, w, n, t, b)
        _chol_into(b, p, low)
        ld = 0.0
        for i in range(p):
            ld = ld + math.log(low[_kk(i, i)])
        out = out - 0.5 * (2.0 * ld)
    out = out - r * _sum8(l1p, n)
    if use_prior:
        out = out - 0.5 * (a - pm) ** 2 / pv
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _dlog_post(sp, a, gene, buf, kept):
    """``_disp_kernels.dlog_posterior`` for one gene; ``kept``: ``w``, ``low``, ``l1p`` are from the same point."""
    yrow, murow, n, xxt, xxqt, p, use_cr, nd, vals, mult, use_sums, use_prior, pm, pv, sumy = gene
    t, t2, w, l1p, iu, b, low, ws = buf
    alpha = math.exp(a)
    r = 1.0 / alpha
    dg = -_special_sum(sp, yrow, n, r, nd, vals, mult, use_sums, True, t)
    if not kept:
        for j in range(n):
            m = murow[j]
            ma = m * alpha
            u = 1.0 + ma
            inv = 1.0 / u
            iu[j] = inv
            l1p[j] = _vlog(u) - ((u - 1.0) - ma) * inv
            w[j] = m * inv
    for j in range(n):  # 1 / (1 + mu alpha) kept: no division here
        inv = iu[j]
        t[j] = l1p[j] - (murow[j] * alpha) * inv  # log(1 + mu alpha) - mu alpha / (1 + mu alpha)
        t2[j] = yrow[j] * (alpha * inv)  # y / (mu + r)
    out = (dg + _sum8(t, n) + _sum8(t2, n)) / alpha**2
    if use_cr:
        if not kept:
            _xtwx_into(xxt, w, n, t, b)
            _chol_into(b, p, low)
        nk = xxqt.shape[0]
        binv = ws[:nk]
        _inv_chol_into(low, p, ws[nk : 2 * nk], binv)
        for j in range(n):
            t[j] = w[j] * w[j]
        # d log det(B) / d alpha = tr(B^-1 X' dW X) with dW = -w^2, and the CR term is -0.5 log det(B):
        # sum_j w_j^2 x_j' B^-1 x_j = sum_k B^-1_k sum_j w_j^2 (x_j x_j')_k, one pass per packed entry
        tr = 0.0
        for k in range(nk):
            tr = tr + binv[k] * _dot8(xxqt[k], t, n)
        out = out + 0.5 * tr
    out = out * alpha
    if use_prior:
        out = out - (a - pm) / pv
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def fit_disp_rows(
    sp, y, mu, xxt, xxqt, p, log_alpha0, prior_mean, use_prior, prior_var, min_log_alpha, kappa_0, tol, maxit, use_cr
):
    """R's ``fitDisp`` (backtracking Armijo line search on log alpha), gene by gene: ``_disp_kernels.fit_disp``.

    ``y``, ``mu`` (G, n) C-ordered; ``xxt`` (P, n) products of design columns in packed order and ``xxqt`` the
    same with off-diagonal entries doubled. Returns ``(log_alpha, iters, initial_lp, last_lp)``.
    """
    g, n = y.shape
    nk = xxt.shape[0]
    use_sums = n >= MIN_SAMPLES_DISTINCT
    out_a = np.empty(g)
    out_it = np.zeros(g, dtype=np.int64)
    out_init = np.empty(g)
    out_last = np.empty(g)
    t = np.empty(n)
    t2 = np.empty(n)
    w = np.empty(n)
    l1p = np.empty(n)
    iu = np.empty(n)
    vals = np.empty(n)
    mult = np.empty(n)
    hist = np.zeros(_hist_size(y) if use_sums else 1, dtype=np.int64)
    b = np.empty(nk)
    low = np.empty(nk)
    ws = np.empty(2 * nk)
    buf = (t, t2, w, l1p, iu, b, low, ws)
    eps = 1e-4
    for gi in range(g):
        yrow = y[gi]
        murow = mu[gi]
        nd = _distinct(yrow, n, vals, mult, hist)[0] if use_sums else 0
        pm = prior_mean[gi] if use_prior else 0.0
        a = log_alpha0[gi]
        sumy = 0.0
        for j in range(n):
            sumy += yrow[j]
        gene = (yrow, murow, n, xxt, xxqt, p, use_cr, nd, vals, mult, use_sums, use_prior, pm, prior_var, sumy)
        lp = _log_post(sp, a, gene, buf)
        dlp = _dlog_post(sp, a, gene, buf, False)
        out_init[gi] = lp
        kappa = kappa_0
        iters = 0
        n_acc = 0
        for _ in range(maxit):
            iters += 1
            prop = a + kappa * dlp
            ka = kappa
            if prop < LOG_ALPHA_LO:
                ka = (LOG_ALPHA_LO - a) / dlp
            if prop > LOG_ALPHA_HI:
                ka = (LOG_ALPHA_HI - a) / dlp
            anew = a + ka * dlp
            lpnew = _log_post(sp, anew, gene, buf)
            accept = -lpnew <= -lp - ka * eps * dlp**2
            small = accept and (lpnew - lp < tol)
            gone = accept and not small and anew < min_log_alpha
            cont = accept and not small and not gone
            if accept:
                a = anew
                n_acc += 1
            if small or cont:  # not when log(alpha) fell below its floor (R breaks first)
                lp = lpnew
            if accept:
                knew = ka * 1.1
                if knew > kappa_0:
                    knew = kappa_0
                if n_acc % 5 == 0:
                    knew = knew / 2.0
            else:
                knew = ka / 2.0
            kappa = knew
            if cont:
                dlp = _dlog_post(sp, a, gene, buf, True)
            if small or gone:
                break
        out_a[gi] = a
        out_it[gi] = iters
        out_last[gi] = lp
    return out_a, out_it, out_init, out_last


# ----------------------------------------------------------------------------------------------------------------
# IRLS of the NB GLM (R's fitBeta), one gene at a time, in one compiled loop (from MIN_SAMPLES_DISTINCT samples)
# ----------------------------------------------------------------------------------------------------------------
_INV_LN2 = 1.4426950408889634
_ROUND = 6755399441055744.0  # 1.5 * 2^52: (x + _ROUND) - _ROUND rounds x to the nearest integer (|x| < 2^51)
# 1 / k! for the Taylor series of exp on |r| <= log(2) / 2 (degree 13: truncation < 5e-18)
_E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11, _E12, _E13 = (1.0 / math.factorial(k) for k in range(2, 14))


@njit(cache=True, nogil=True, error_model="numpy")
def _vexp(x):
    """``exp(x)`` in IEEE arithmetic without branches or library calls, so that loops of it vectorise.

    ``x = k log 2 + r`` (``k`` the nearest integer to ``x / log 2``, ``r`` by the two-part ``log 2`` of
    :func:`_vlog`), ``exp(r)`` by its Taylor series, then ``2^k`` as two exact powers of two (so that subnormal
    results are rounded once). Within ~1 ulp of the correctly rounded value (tested); over- and underflow, infinite
    and NaN arguments give what ``exp`` gives.
    """
    xc = -746.0 if x < -746.0 else x
    xc = 710.0 if xc > 710.0 else xc
    kf = (xc * _INV_LN2 + _ROUND) - _ROUND
    kf = 0.0 if kf != kf else kf  # NaN: the result is NaN through r below
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    p = 1.0 + r * (
        1.0
        + r
        * (
            _E2
            + r
            * (
                _E3
                + r
                * (
                    _E4
                    + r
                    * (
                        _E5
                        + r
                        * (_E6 + r * (_E7 + r * (_E8 + r * (_E9 + r * (_E10 + r * (_E11 + r * (_E12 + r * _E13)))))))
                    )
                )
            )
        )
    )
    k = np.int64(kf)
    k1 = k >> 1
    k2 = k - k1
    return (p * _i2f((k1 + 1023) << 52)) * _i2f((k2 + 1023) << 52)


@njit(cache=True, nogil=True, error_model="numpy")
def _irls_mu(yrow, beta, xt, p, n, nf, lnf, lmin, min_mu, alpha, log_r, eta_c, mu, iu, t):
    """Means of a gene at ``beta`` (clamped below at ``min_mu``) and what the next IRLS step needs of them.

    ``eta_c = log(mu / nf)``, ``iu = 1 / (1 + mu alpha)``; returns the ``mu``-dependent part of the log-likelihood
    (:func:`_kernels.nb_loglik_mu`), with ``log(mu + r) = log r + log1p(mu alpha)``: one log per sample.
    """
    r = 1.0 / alpha
    for j in range(n):
        eta_c[j] = beta[0] * xt[0, j]
    for k in range(1, p):
        bk = beta[k]
        for j in range(n):
            eta_c[j] = eta_c[j] + bk * xt[k, j]
    lmu_min = math.log(min_mu)
    for j in range(n):  # vectorised: no calls, no branches
        e = eta_c[j]
        m = nf[j] * _vexp(e)
        low = m < min_mu
        m = min_mu if low else m
        mu[j] = m
        eta_c[j] = lmin[j] if low else e
        lm = lmu_min if low else e + lnf[j]
        ma = m * alpha
        u = 1.0 + ma
        inv = 1.0 / u
        l1p = _vlog(u) - ((u - 1.0) - ma) * inv
        iu[j] = inv
        y = yrow[j]
        t[j] = (y * ((lm - log_r) - l1p) if y > 0 else 0.0) - r * l1p
    return _sum8(t, n)


@njit(cache=True, nogil=True, error_model="numpy")
def _solve_chol_into(low, p, b, x, tmp):
    """Solve ``L L' x = b`` (packed ``low``), as ``DesignOps.solve_chol``."""
    for i in range(p):
        v = b[i]
        for m in range(i):
            v = v - low[_kk(i, m)] * tmp[m]
        tmp[i] = v / low[_kk(i, i)]
    for i in range(p - 1, -1, -1):
        v = tmp[i]
        for m in range(i + 1, p):
            v = v - low[_kk(m, i)] * x[m]
        x[i] = v / low[_kk(i, i)]


@njit(cache=True, nogil=True, error_model="numpy")
def fit_beta_rows(y, nf, alpha, beta0, ridge, xt, xxt, xxqt, ll_const, tol, maxit, min_mu, large_beta):
    """R's ``fitBeta`` (IRLS on the ridge normal equations) gene by gene: ``_kernels.fit_beta``.

    ``y`` (G, n) C-ordered counts, ``nf`` (n,), ``alpha`` (G,), ``beta0`` (G, p), ``ridge`` (p,), ``xt`` (p, n) the
    design's columns, ``xxt``/``xxqt`` (P, n) as in :func:`fit_disp_rows`, ``ll_const`` (G,) the ``mu``-free part of
    each gene's log-likelihood. The same rules as the numpy kernel: a gene stops when the relative change of the
    deviance is below ``tol`` (not at the first iteration); a coefficient above ``large_beta`` in absolute value, a
    NaN coefficient or deviance marks it as not converged (``iters == maxit``) and keeps the means of the step
    before. Returns ``(beta, cov (P, G), hat (G, n), iters)``.
    """
    g, n = y.shape
    p = xt.shape[0]
    nk = xxt.shape[0]
    beta_out = np.empty((g, p))
    cov = np.empty((nk, g))
    hat = np.empty((g, n))
    iters_out = np.zeros(g, dtype=np.int64)
    lnf = np.empty(n)
    lmin = np.empty(n)
    for j in range(n):
        lnf[j] = math.log(nf[j])
        lmin[j] = math.log(min_mu / nf[j])
    eta_c, mu, iu = np.empty(n), np.empty(n), np.empty(n)
    eta2, mu2, iu2 = np.empty(n), np.empty(n), np.empty(n)
    w, wz, t = np.empty(n), np.empty(n), np.empty(n)
    a_mat, low, rhs = np.empty(nk), np.empty(nk), np.empty(p)
    bnew, tmp, beta = np.empty(p), np.empty(p), np.empty(p)
    info, linv, ainv = np.empty(nk), np.empty(nk), np.empty(nk)
    tt = np.empty((p, p))
    for gi in range(g):
        yrow = y[gi]
        a = alpha[gi]
        log_r = math.log(1.0 / a)
        for k in range(p):
            beta[k] = beta0[gi, k]
        _irls_mu(yrow, beta, xt, p, n, nf, lnf, lmin, min_mu, a, log_r, eta_c, mu, iu, t)
        dev_old = 0.0
        iters = 0
        for it in range(maxit):
            iters += 1
            for j in range(n):  # w = mu / (1 + alpha mu), w z = w log(mu / nf) + (y - mu) / (1 + alpha mu)
                wj = mu[j] * iu[j]
                w[j] = wj
                wz[j] = wj * eta_c[j] + (yrow[j] - mu[j]) * iu[j]
            for k in range(nk):
                a_mat[k] = _dot8(xxt[k], w, n)
            for k in range(p):
                a_mat[_kk(k, k)] = a_mat[_kk(k, k)] + ridge[k]
                rhs[k] = _dot8(xt[k], wz, n)
            _chol_into(a_mat, p, low)
            _solve_chol_into(low, p, rhs, bnew, tmp)
            big = False
            for k in range(p):
                beta[k] = bnew[k]
                if abs(bnew[k]) > large_beta or bnew[k] != bnew[k]:
                    big = True
            if big:  # R breaks before updating mu
                iters = maxit
                break
            llm = _irls_mu(yrow, beta, xt, p, n, nf, lnf, lmin, min_mu, a, log_r, eta2, mu2, iu2, t)
            eta_c, eta2 = eta2, eta_c
            mu, mu2 = mu2, mu
            iu, iu2 = iu2, iu
            dev = -2.0 * (ll_const[gi] + llm)
            conv = abs(dev - dev_old) / (abs(dev) + 0.1)
            if conv != conv:
                iters = maxit
                break
            if it > 0 and conv < tol:
                break
            dev_old = dev
        iters_out[gi] = iters
        for k in range(p):
            beta_out[gi, k] = beta[k]
        # the sandwich covariance (X'WX + R)^-1 X'WX (X'WX + R)^-1 and the hat diagonals at the final means
        for j in range(n):
            w[j] = mu[j] * iu[j]
        for k in range(nk):
            info[k] = _dot8(xxt[k], w, n)
            a_mat[k] = info[k]
        for k in range(p):
            a_mat[_kk(k, k)] = a_mat[_kk(k, k)] + ridge[k]
        _chol_into(a_mat, p, low)
        _inv_chol_into(low, p, linv, ainv)
        for j in range(n):
            t[j] = 0.0
        for k in range(nk):
            ak = ainv[k]
            for j in range(n):
                t[j] += xxqt[k, j] * ak
        for j in range(n):
            hat[gi, j] = w[j] * t[j]
        for i in range(p):
            for j in range(p):
                v = 0.0
                for m in range(p):
                    v = v + ainv[_kk(i, m)] * info[_kk(m, j)]
                tt[i, j] = v
        for i in range(p):
            for j in range(i + 1):
                v = 0.0
                for m in range(p):
                    v = v + tt[i, m] * ainv[_kk(m, j)]
                cov[_kk(i, j), gi] = v
    return beta_out, cov, hat, iters_out
