"""``deseq2_fit``: R DESeq2's ``DESeq()`` (size factors, dispersions, GLM, Cook's, outlier refit) for all genes."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .._size_factors import size_factors_ratio
from .._threads import default_threads, parallel_for
from ._backend import single_threaded_blas
from ._cooks import _chunks, _stage2, _Stage2Out, n_or_more_in_cell, replace_outliers_and_refit
from ._dispersion import _disp_start_and_mu, _genewise, _trend_function
from ._glm import _Ctx
from ._trend import prior_variance

logger = logging.getLogger(__name__)


@dataclass
class DESeq2Fit:
    """Everything ``deseq2_fit`` estimates; per gene ``(G,)``, per coefficient ``(G, p)``, per sample ``(n, G)``.

    Coefficients, their standard errors and covariances are on the natural-log scale (R stores log2).
    Genes with all-zero counts carry NaN in every per-gene estimate (``all_zero`` is True).
    """

    counts: np.ndarray  #: (n, G) original counts
    design: np.ndarray  #: (n, p)
    coef_names: list[str]
    size_factors: np.ndarray  #: (n,)
    base_mean: np.ndarray  #: mean of normalised counts (after outlier replacement for refitted genes, as R)
    base_var: np.ndarray
    all_zero: np.ndarray
    genewise_dispersions: np.ndarray
    genewise_iters: np.ndarray
    fitted_dispersions: np.ndarray
    map_dispersions: np.ndarray
    dispersions: np.ndarray  #: final: MAP, or gene-wise for dispersion outliers
    disp_outlier: np.ndarray
    map_iters: np.ndarray
    trend_coeffs: np.ndarray  #: (asymptDisp, extraPois) for the parametric trend, NaN otherwise
    fit_type: str
    prior_disp_var: float
    var_log_disp_ests: float
    beta: np.ndarray  #: (G, p) natural log
    beta_se: np.ndarray  #: (G, p) natural log
    beta_cov: np.ndarray  #: (G, p, p) natural log
    beta_converged: np.ndarray
    beta_iters: np.ndarray
    log_likelihood: np.ndarray  #: full-model log-likelihood (R's -deviance/2)
    mu: np.ndarray | None  #: (n, G) fitted means of the final GLM (None when not kept)
    hat_diagonals: np.ndarray | None
    cooks: np.ndarray | None  #: (n, G) Cook's distances of the first fit (R keeps these after refitting)
    max_cooks: np.ndarray  #: per-gene maximum Cook's distance over samples in cells with >= 3 replicates
    cooks_argmax: np.ndarray  #: sample with the largest Cook's distance (all samples), -1 for all-zero genes
    replaceable: np.ndarray  #: (n,) samples in cells with >= min_replicates replicates
    replaced: np.ndarray  #: genes with a Cook's distance above the cutoff (R's ``replace``)
    refitted: np.ndarray  #: genes refitted after outlier replacement
    replace_gene_idx: np.ndarray  #: genes whose counts used for fitting differ from ``counts``
    replace_counts: np.ndarray  #: (n, len(replace_gene_idx)) counts used for those genes
    min_mu: float = 0.5
    min_disp: float = 1e-8
    max_disp: float = 10.0
    beta_tol: float = 1e-8
    device: str = "cpu"
    extras: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return self.design.shape[0]

    @property
    def n_genes(self) -> int:
        """Number of genes."""
        return self.counts.shape[1]

    def fitting_counts(self, genes: np.ndarray | None = None) -> np.ndarray:
        """Counts used for fitting (outlier-replaced where R refitted), ``(n, G)`` or the given gene columns."""
        genes = np.arange(self.n_genes) if genes is None else np.asarray(genes)
        out = self.counts[:, genes].astype(np.float64)
        if self.replace_gene_idx.size:
            pos = np.searchsorted(self.replace_gene_idx, genes)
            pos = np.clip(pos, 0, self.replace_gene_idx.size - 1)
            hit = self.replace_gene_idx[pos] == genes
            out[:, hit] = self.replace_counts[:, pos[hit]]
        return out


# ----------------------------------------------------------------------------------------------------------------


def _as_int_counts(cnt: np.ndarray) -> np.ndarray:
    """Non-negative counts as integers without widening: int32 where they fit (int64 input is kept as given).

    10,000 samples x 20,000 genes are 0.8 GB as int32 and 1.6 GB as int64; every step reads the counts in gene
    batches converted to float64, so the narrower type costs nothing.
    """
    if cnt.dtype == np.int64 or cnt.dtype == np.int32:
        return cnt
    if cnt.size == 0 or float(cnt.max()) <= np.iinfo(np.int32).max:
        return np.asarray(cnt, dtype=np.int32)
    return np.asarray(cnt, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------------
# the public fit
# ----------------------------------------------------------------------------------------------------------------
def deseq2_fit(
    counts: ArrayLike,
    design: ArrayLike,
    *,
    coef_names: Sequence[str] | None = None,
    size_factors: ArrayLike | None = None,
    fit_type: str = "parametric",
    min_mu: float = 0.5,
    min_disp: float = 1e-8,
    max_disp: float = 10.0,
    beta_tol: float = 1e-8,
    min_replicates: int = 7,
    refit_cooks: bool = True,
    chunk_size: int | None = None,
    keep_matrices: bool | None = None,
    n_threads: int | None = None,
    device: str = "cpu",
) -> DESeq2Fit:
    """Fit DESeq2's negative binomial GLM to every gene at once, following R DESeq2's ``DESeq()``.

    Steps, each as in R (DESeq2 1.38): median-of-ratios size factors; gene-wise dispersions (rough/moments
    start, mean from a linear model or an NB GLM, Armijo line search on log alpha with the Cox-Reid term, grid
    search where it does not converge); the parametric trend ``a0 + a1 / mean`` by an iterated gamma GLM;
    prior variance from the MAD of log residuals; MAP dispersions (gene-wise kept for outliers more than 2 SD
    above the trend); IRLS for the coefficients with L-BFGS-B for genes that do not converge; Cook's
    distances; and, when a cell of the design has at least ``min_replicates`` samples, replacement of outlier
    counts by the trimmed mean and refitting of those genes.

    Parameters
    ----------
    counts
        Samples x genes non-negative integer counts.
    design
        Samples x coefficients design matrix of full column rank (usually with an intercept column).
    coef_names
        Names of the design columns (default ``"x0"``, ``"x1"``, ...).
    size_factors
        Size factors; median-of-ratios by default.
    fit_type
        Dispersion trend: ``"parametric"``, ``"local"`` (R's ``locfit`` fit, ported) or ``"mean"``.
    min_mu, min_disp, max_disp, beta_tol
        R's ``minmu``, ``minDisp``, ``maxDisp`` (effectively ``max(max_disp, n_samples)``) and ``betaTol``.
    min_replicates
        R's ``minReplicatesForReplace``.
    refit_cooks
        Whether to replace Cook's outliers and refit (when some cell has ``min_replicates`` samples).
    chunk_size
        Genes per batch (default: about 250,000 matrix entries per batch, at least 64 genes).
    keep_matrices
        Keep the ``(n, G)`` matrices ``mu``, ``hat_diagonals`` and ``cooks`` (default: when ``n * G <= 5e7``).
    n_threads
        Gene batches processed in parallel threads (default: the CPUs available, at most 4, for problems of at
        least 2 million counts; otherwise and on accelerators 1). Results do not depend on it.
    device
        Torch device (``"cpu"``, ``"cuda"``, ...). All arithmetic is float64.

    Returns
    -------
    A :class:`DESeq2Fit`.

    Examples
    --------
    >>> import gendex as gdx
    >>> import numpy as np
    >>> ad = gdx.datasets.simulate_counts(n_samples=8, n_genes=300, random_state=0)
    >>> design = np.column_stack([np.ones(8), (ad.obs["condition"] == "B").to_numpy(float)])
    >>> fit = gdx.stats.deseq2_fit(ad.X, design, coef_names=["Intercept", "condition[T.B]"])
    >>> fit.beta.shape
    (300, 2)
    """
    cnt = np.asarray(counts)
    if cnt.ndim != 2:
        raise ValueError(f"`counts` must be a 2-D samples x genes array, got shape {cnt.shape}")
    if not (np.issubdtype(cnt.dtype, np.number) or cnt.dtype == bool):
        raise ValueError("`counts` must be numbers")
    if not np.issubdtype(cnt.dtype, np.integer):
        with np.errstate(invalid="ignore"):
            if np.any(~np.isfinite(cnt)):
                raise ValueError("`counts` must be finite numbers")
            if np.any(cnt != np.round(cnt)):
                raise ValueError("`counts` must be non-negative integers")
    if np.any(cnt < 0):
        raise ValueError("`counts` must be non-negative integers")
    cnt = _as_int_counts(cnt)
    x = np.asarray(design, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != cnt.shape[0]:
        raise ValueError(f"`design` must be a {cnt.shape[0]} x p matrix, got shape {x.shape}")
    n, p = x.shape
    if np.linalg.matrix_rank(x) < p:
        raise ValueError("the design matrix is not of full column rank")
    if n <= p:
        raise ValueError(
            "the number of samples equals the number of coefficients: there are no replicates to estimate the "
            "dispersion"
        )
    names = [f"x{i}" for i in range(p)] if coef_names is None else [str(c) for c in coef_names]
    if len(names) != p:
        raise ValueError(f"`coef_names` has {len(names)} names for {p} design columns")
    if fit_type not in ("parametric", "local", "mean"):
        raise ValueError(f"`fit_type` must be 'parametric', 'local' or 'mean', got {fit_type!r}")
    if size_factors is None:
        sf = size_factors_ratio(cnt, n_threads=n_threads)
    else:
        sf = np.asarray(size_factors, dtype=np.float64)
        if sf.shape != (n,) or np.any(~np.isfinite(sf)) or np.any(sf <= 0):
            raise ValueError(f"`size_factors` must be {n} positive finite numbers")
    g_all = cnt.shape[1]
    if n_threads is None:  # threads pay off only for large problems
        n_threads = default_threads(cnt.size) if device == "cpu" else 1
    if chunk_size is None:
        # ~2 MB per (genes x samples) array, so that the temporaries of each step stay in the CPU caches
        chunk_size = max(64, int(250_000 // n))
        if n_threads > 1:  # enough batches to keep the threads busy, but not so many that overhead dominates
            chunk_size = max(min(chunk_size, -(-g_all // (2 * n_threads))), min(chunk_size, 2000))
    if keep_matrices is None:
        keep_matrices = n * g_all <= 50_000_000

    ctx = _Ctx(x, sf, min_mu=min_mu, min_disp=min_disp, max_disp=max_disp, beta_tol=beta_tol, device=device)
    with np.errstate(all="ignore"), single_threaded_blas():
        return _run(cnt, x, names, sf, ctx, fit_type, min_replicates, refit_cooks, chunk_size, keep_matrices, n_threads)


def _run(cnt, x, names, sf, ctx, fit_type, min_replicates, refit_cooks, chunk_size, keep_matrices, n_threads):
    n, p = x.shape
    g_all = cnt.shape[1]
    base_mean = np.empty(g_all)
    base_var = np.empty(g_all)
    step = max(1, 4_000_000 // n)

    def moments(sl):
        normed = cnt[:, sl : sl + step] / sf[:, None]
        base_mean[sl : sl + normed.shape[1]] = normed.mean(0)
        base_var[sl : sl + normed.shape[1]] = normed.var(0, ddof=1)

    parallel_for(moments, range(0, g_all, step), n_threads)
    all_zero = base_mean == 0
    nz = np.flatnonzero(~all_zero)

    nanv = np.full(g_all, np.nan)
    gene_disp, gene_iters = nanv.copy(), np.zeros(g_all, dtype=np.int64)
    mu_disp = np.empty((g_all, n)) if keep_matrices else None  # (G, n): rows are written and read per batch

    # --- stage 1: gene-wise dispersions
    def stage1(idx):
        y = ctx.t(cnt[:, idx].T.astype(np.float64))
        res = _genewise(y, ctx)
        gene_disp[idx] = ctx.np(res["disp"])
        gene_iters[idx] = ctx.np(res["iters"])
        if keep_matrices:
            mu_disp[idx] = ctx.np(res["mu"])

    parallel_for(stage1, _chunks(nz, chunk_size), n_threads)

    # --- trend and prior
    trend, coeffs, used_type = _trend_function(fit_type, base_mean[nz], gene_disp[nz], ctx.min_disp)
    fitted = nanv.copy()
    fitted[nz] = trend(base_mean[nz])
    if not np.any(gene_disp[nz] >= ctx.min_disp * 100):
        warnings.warn(
            f"all genes have dispersion estimates < {ctx.min_disp * 10}; returning disp = {ctx.min_disp * 10}",
            stacklevel=3,
        )
        prior_var, var_log = 0.25, np.nan
    else:
        prior_var, var_log = prior_variance(gene_disp[nz], fitted[nz], n, p, ctx.min_disp)

    samples_for_cooks = n_or_more_in_cell(x, 3)
    replaceable = n_or_more_in_cell(x, min_replicates)
    cutoff = stats.f.ppf(0.99, p, n - p)
    out = _Stage2Out.empty(
        n,
        p,
        all_zero,
        keep_matrices,
        samples_for_cooks=samples_for_cooks,
        replaceable=replaceable,
        cutoff=cutoff,
    )

    def stage2(idx):
        y = ctx.t(cnt[:, idx].T.astype(np.float64))
        mu = ctx.t(mu_disp[idx]) if keep_matrices else _disp_start_and_mu(y, ctx)[1]
        _stage2(y, mu, idx, ctx, gene_disp, fitted, prior_var, var_log, out)

    parallel_for(stage2, _chunks(nz, chunk_size), n_threads)

    # --- Cook's bookkeeping and outlier replacement
    cooks_all = out.cooks  # (n, G) or None
    max_cooks = out.max_cooks_all if samples_for_cooks.any() else nanv.copy()
    replaced = np.zeros(g_all, dtype=bool)
    refitted = np.zeros(g_all, dtype=bool)
    rep_idx = np.zeros(0, dtype=np.int64)
    rep_counts = np.zeros((n, 0))
    if refit_cooks and replaceable.any():
        replaced, refitted, rep_idx, rep_counts, max_cooks = replace_outliers_and_refit(
            cnt,
            ctx,
            out,
            trend,
            base_mean,
            base_var,
            fitted,
            gene_disp,
            gene_iters,
            prior_var,
            var_log,
            chunk_size,
            max_cooks=max_cooks,
        )

    result = DESeq2Fit(
        counts=cnt,
        design=x,
        coef_names=names,
        size_factors=sf,
        base_mean=base_mean,
        base_var=base_var,
        all_zero=all_zero,
        genewise_dispersions=gene_disp,
        genewise_iters=gene_iters,
        fitted_dispersions=fitted,
        map_dispersions=out.map,
        dispersions=out.final,
        disp_outlier=out.outlier,
        map_iters=out.map_iters,
        trend_coeffs=coeffs,
        fit_type=used_type,
        prior_disp_var=float(prior_var),
        var_log_disp_ests=float(var_log),
        beta=out.beta,
        beta_se=out.se,
        beta_cov=out.cov,
        beta_converged=out.conv,
        beta_iters=out.iters,
        log_likelihood=out.loglik,
        mu=out.mu,
        hat_diagonals=out.hat,
        cooks=cooks_all,
        max_cooks=max_cooks,
        cooks_argmax=out.cooks_argmax,
        replaceable=replaceable,
        replaced=replaced,
        refitted=refitted,
        replace_gene_idx=rep_idx,
        replace_counts=rep_counts,
        min_mu=ctx.min_mu,
        min_disp=ctx.min_disp,
        max_disp=ctx.max_disp,
        beta_tol=ctx.beta_tol,
        device=str(ctx.device),
    )
    result.extras["samples_for_cooks"] = samples_for_cooks
    result.extras["cooks_cutoff"] = float(cutoff)
    return result
