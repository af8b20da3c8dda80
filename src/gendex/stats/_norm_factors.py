"""TMM normalisation factors (Robinson & Oshlack 2010, as in edgeR's ``calcNormFactors``), on arrays."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats


def _tmm_factor(
    obs: NDArray,
    ref: NDArray,
    lib_obs: float,
    lib_ref: float,
    *,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
    a_cutoff: float,
) -> float:
    """TMM factor of one sample against the reference sample (edgeR's ``.calcFactorTMM``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p_obs = obs / lib_obs
        p_ref = ref / lib_ref
        log_r = np.log2(p_obs / p_ref)
        abs_e = (np.log2(p_obs) + np.log2(p_ref)) / 2.0
        var = (lib_obs - obs) / lib_obs / obs + (lib_ref - ref) / lib_ref / ref
    fin = np.isfinite(log_r) & np.isfinite(abs_e) & (abs_e > a_cutoff)
    log_r, abs_e, var = log_r[fin], abs_e[fin], var[fin]
    if log_r.size == 0:
        return 1.0
    if np.max(np.abs(log_r)) < 1e-6:
        return 1.0
    n = log_r.size
    lo_l = np.floor(n * logratio_trim) + 1
    hi_l = n + 1 - lo_l
    lo_s = np.floor(n * sum_trim) + 1
    hi_s = n + 1 - lo_s
    rank_r = stats.rankdata(log_r)
    rank_e = stats.rankdata(abs_e)
    keep = (rank_r >= lo_l) & (rank_r <= hi_l) & (rank_e >= lo_s) & (rank_e <= hi_s)
    if not keep.any():
        return 1.0
    if do_weighting:
        f = np.sum(log_r[keep] / var[keep]) / np.sum(1.0 / var[keep])
    else:
        f = np.mean(log_r[keep])
    return float(2.0**f) if np.isfinite(f) else 1.0


def calc_norm_factors_tmm(
    counts: ArrayLike,
    *,
    lib_size: ArrayLike | None = None,
    ref_sample: int | None = None,
    logratio_trim: float = 0.3,
    sum_trim: float = 0.05,
    do_weighting: bool = True,
    a_cutoff: float = -1e10,
) -> NDArray[np.float64]:
    """TMM normalisation factors (edgeR's ``calcNormFactors(method="TMM")``).

    Each sample is compared with a reference sample: the log-ratios ``M`` of the two libraries' proportions
    are trimmed by ``logratio_trim`` at both ends, the average log-expressions ``A`` by ``sum_trim``, and the
    remaining ``M`` are averaged with inverse-variance (delta-method) weights. The factors are rescaled to a
    geometric mean of 1.

    Parameters
    ----------
    counts
        Samples x genes non-negative counts.
    lib_size
        Library sizes; by default the sample totals.
    ref_sample
        Index of the reference sample; by default the sample whose upper-quartile proportion is closest to
        the mean upper-quartile proportion (edgeR's rule).
    logratio_trim
        Fraction of log-ratios trimmed at each end.
    sum_trim
        Fraction of average log-expressions trimmed at each end.
    do_weighting
        Use the asymptotic binomial precision weights.
    a_cutoff
        Genes with average log-expression at or below this are ignored.

    Returns
    -------
    One normalisation factor per sample; the effective library size is ``lib_size * factor``.

    Examples
    --------
    >>> import numpy as np
    >>> from gendex.stats import calc_norm_factors_tmm
    >>> counts = np.random.default_rng(0).poisson(50, size=(4, 300))
    >>> f = calc_norm_factors_tmm(counts)
    >>> bool(np.isclose(np.exp(np.log(f).mean()), 1.0))
    True
    """
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"`counts` must be a 2-d samples x genes array, got shape {x.shape}")
    n_samples = x.shape[0]
    lib = x.sum(axis=1) if lib_size is None else np.asarray(lib_size, dtype=np.float64)
    if lib.shape != (n_samples,):
        raise ValueError(f"`lib_size` must have one value per sample ({n_samples}), got shape {lib.shape}")
    if np.any(~np.isfinite(lib)) or np.any(lib <= 0):
        raise ValueError("library sizes must be positive and finite (is a sample empty?)")
    x = x[:, (x > 0).any(axis=0)]
    if x.shape[1] == 0 or n_samples == 1:
        return np.ones(n_samples)
    if ref_sample is None:
        upper_q = np.quantile(x, 0.75, axis=1) / lib
        if np.median(upper_q) < 1e-20:
            ref_sample = int(np.argmax(np.sqrt(x).sum(axis=1)))
        else:
            ref_sample = int(np.argmin(np.abs(upper_q - upper_q.mean())))
    elif not 0 <= ref_sample < n_samples:
        raise ValueError(f"`ref_sample` must be a sample index in [0, {n_samples}), got {ref_sample}")
    factors = np.array(
        [
            _tmm_factor(
                x[i],
                x[ref_sample],
                lib[i],
                lib[ref_sample],
                logratio_trim=logratio_trim,
                sum_trim=sum_trim,
                do_weighting=do_weighting,
                a_cutoff=a_cutoff,
            )
            for i in range(n_samples)
        ]
    )
    return factors / np.exp(np.mean(np.log(factors)))


def calc_norm_factors_tmm_lazy(counts, lib_size: NDArray, expressed: NDArray[np.bool_], **kw) -> NDArray[np.float64]:
    """:func:`calc_norm_factors_tmm` (default reference sample) of checked dask counts, on blocks of whole samples.

    ``lib_size`` are the sample totals and ``expressed`` the genes with a count somewhere (both from a first
    pass). One pass over sample blocks finds each sample's upper quartile (for the reference sample), the
    reference sample's row is read, and a second pass compares each sample with it. Every number is computed
    from the same rows as in memory, so the factors are the same.
    """
    from .._lazy import map_blocks

    lib = np.asarray(lib_size, dtype=np.float64)
    n_samples = lib.size
    if np.any(~np.isfinite(lib)) or np.any(lib <= 0):
        raise ValueError("library sizes must be positive and finite (is a sample empty?)")
    genes = np.flatnonzero(expressed)
    if genes.size == 0 or n_samples == 1:
        return np.ones(n_samples)
    parts = map_blocks(lambda b, sl: _row_summaries(b[:, genes].astype(np.float64)), counts, axis=0)
    upper_q = np.concatenate([p[0] for p in parts]) / lib
    if np.median(upper_q) < 1e-20:
        ref = int(np.argmax(np.concatenate([p[1] for p in parts])))
    else:
        ref = int(np.argmin(np.abs(upper_q - upper_q.mean())))
    ref_row = np.asarray(counts[ref].compute())[genes].astype(np.float64)
    opts = {"logratio_trim": 0.3, "sum_trim": 0.05, "do_weighting": True, "a_cutoff": -1e10, **kw}

    def block_factors(block: NDArray, sl: slice) -> NDArray[np.float64]:
        rows = block[:, genes].astype(np.float64)
        return np.array([_tmm_factor(row, ref_row, lib[sl.start + i], lib[ref], **opts) for i, row in enumerate(rows)])

    factors = np.concatenate(map_blocks(block_factors, counts, axis=0))
    return factors / np.exp(np.mean(np.log(factors)))


def _row_summaries(x: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
    """Each sample's upper-quartile count and sum of square-root counts (edgeR's reference-sample rules)."""
    return np.quantile(x, 0.75, axis=1), np.sqrt(x).sum(axis=1)
