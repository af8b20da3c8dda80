"""``deseq2_fit``: R DESeq2's ``DESeq()`` (size factors, dispersions, GLM, Cook's, outlier refit) for all genes."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from ..._lazy import block_size, is_dask, map_slices
from .._size_factors import size_factors_ratio
from .._threads import default_threads, parallel_for
from ._backend import single_threaded_blas
from ._cooks import _cells, _chunks, _stage2, _Stage2Out, n_or_more_in_cell, replace_outliers_and_refit
from ._dispersion import _disp_start_and_mu, _genewise, _trend_function
from ._glm import _Ctx
from ._trend import prior_variance

logger = logging.getLogger(__name__)

#: matrix entries per batch of genes by default (~2 MB per float array, so that each step stays in the CPU caches)
_BATCH_ENTRIES = 250_000


@dataclass
class DESeq2Fit:
    """Everything ``deseq2_fit`` estimates; per gene ``(G,)``, per coefficient ``(G, p)``, per sample ``(n, G)``.

    Coefficients, their standard errors and covariances are on the natural-log scale (R stores log2).
    Genes with all-zero counts carry NaN in every per-gene estimate (``all_zero`` is True).
    """

    counts: Any  #: (n, G) original counts (a NumPy array, or the caller's dask array, never loaded)
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

    @property
    def lazy(self) -> bool:
        """Whether ``counts`` is a dask array (the fit then keeps no ``(n, G)`` matrix)."""
        return is_dask(self.counts)

    def fitting_counts(self, genes: np.ndarray | None = None) -> np.ndarray:
        """Counts used for fitting (outlier-replaced where R refitted), ``(n, G)`` or the given gene columns."""
        genes = np.arange(self.n_genes) if genes is None else np.asarray(genes)
        return self.fitting_block(self.counts, 0, genes)

    def fitting_block(self, block: Any, start: int, genes: np.ndarray) -> np.ndarray:
        """:meth:`fitting_counts` of ``genes`` from ``block``, the count columns from gene ``start`` on."""
        return fitting_block(block, start, genes, self.replace_gene_idx, self.replace_counts)

    def original_counts(self, genes: np.ndarray) -> np.ndarray:
        """The original counts of a few ``genes`` as a NumPy ``(n, len(genes))`` array (read once from dask)."""
        genes = np.asarray(genes, dtype=np.int64)
        if not self.lazy:
            return self.counts[:, genes]
        held, values = self.extras.get("outlier_columns", (np.zeros(0, dtype=np.int64), None))
        pos = np.clip(np.searchsorted(held, genes), 0, max(held.size - 1, 0))
        if held.size and np.all(held[pos] == genes):
            return values[:, pos]
        return _read_columns(self.counts, genes)


def fitting_block(block: Any, start: int, genes: np.ndarray, rep_idx: np.ndarray, rep_counts: np.ndarray) -> np.ndarray:
    """Float counts of ``genes`` from ``block`` (columns from gene ``start`` on), outlier-replaced where refitted."""
    out = np.asarray(block[:, genes - start]).astype(np.float64)
    if rep_idx.size:
        pos = np.clip(np.searchsorted(rep_idx, genes), 0, rep_idx.size - 1)
        hit = rep_idx[pos] == genes
        out[:, hit] = rep_counts[:, pos[hit]]
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
    nonzero_genes: ArrayLike | None = None,
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
        Samples x genes non-negative integer counts: a NumPy array, or a dask array, which is then checked and
        fitted in blocks of whole genes (each stage a map over the blocks on the active dask scheduler, every
        block holding whole batches of ``chunk_size`` genes as in memory, so the results are the same bit for
        bit). The fit then keeps no ``(n, G)`` matrix: ``mu``, ``hat_diagonals`` and ``cooks`` are None.
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
        Keep the ``(n, G)`` matrices ``mu``, ``hat_diagonals`` and ``cooks`` (default: when ``n * G <= 5e7``;
        never for dask counts).
    n_threads
        Gene batches processed in parallel threads (default: the CPUs available, at most 4, for problems of at
        least 2 million counts; otherwise and on accelerators 1). Results do not depend on it. Dask counts run on
        the dask scheduler's threads or workers instead.
    device
        Torch device (``"cpu"``, ``"cuda"``, ...). All arithmetic is float64.
    nonzero_genes
        Dask counts only: which genes have a non-zero count, from a pass over the counts that also checked them
        (as :func:`gendex.tl.deseq2` does); the counts are then not scanned again. None: scanned here.

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
    lazy = is_dask(counts)
    cnt: Any = counts if lazy else np.asarray(counts)
    if cnt.ndim != 2:
        raise ValueError(f"`counts` must be a 2-D samples x genes array, got shape {cnt.shape}")
    if not (np.issubdtype(cnt.dtype, np.number) or cnt.dtype == bool):
        raise ValueError("`counts` must be numbers")
    if lazy:
        if keep_matrices:
            raise ValueError(
                "keep_matrices=True would hold (samples x genes) matrices in memory, which dask counts are meant to "
                "avoid; leave keep_matrices=None, or load the counts first (`counts.compute()`)"
            )
        keep_matrices = False
        if nonzero_genes is None:
            scans = map_slices(_scan_block, cnt, _gene_ranges(cnt.shape[1], _genes_per_block(cnt.shape[0])))
            problem = next((msg for msg, _ in scans if msg), None)
            if problem:
                raise ValueError(problem)
            nonzero = np.concatenate([nzb for _, nzb in scans])
        else:  # checked by the caller in its own pass over the counts (tl.deseq2)
            nonzero = np.asarray(nonzero_genes, dtype=bool).ravel()
            if nonzero.shape != (cnt.shape[1],):
                raise ValueError(f"`nonzero_genes` must hold {cnt.shape[1]} booleans, got shape {nonzero.shape}")
    else:
        problem = _count_problem(cnt, slice(None))
        if problem:
            raise ValueError(problem)
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
        chunk_size = max(64, int(_BATCH_ENTRIES // n))
        if n_threads > 1:  # enough batches to keep the threads busy, but not so many that overhead dominates
            chunk_size = max(min(chunk_size, -(-g_all // (2 * n_threads))), min(chunk_size, 2000))
    if keep_matrices is None:
        keep_matrices = n * g_all <= 50_000_000

    ctx = _Ctx(x, sf, min_mu=min_mu, min_disp=min_disp, max_disp=max_disp, beta_tol=beta_tol, device=device)
    args = (cnt, x, names, sf, ctx, fit_type, min_replicates, refit_cooks, chunk_size)
    with np.errstate(all="ignore"), single_threaded_blas():
        if lazy:
            return _run_lazy(*args, nonzero=nonzero)
        return _run(*args, keep_matrices, n_threads)


def _count_problem(block: np.ndarray, where: slice) -> str | None:
    """What is wrong with a block of counts (None when they are non-negative integers)."""
    if not np.issubdtype(block.dtype, np.integer) and block.dtype != bool:
        with np.errstate(invalid="ignore"):
            if np.any(~np.isfinite(block)):
                return "`counts` must be finite numbers"
            if np.any(block != np.round(block)):
                return "`counts` must be non-negative integers"
    if np.any(block < 0):
        return "`counts` must be non-negative integers"
    return None


def _scan_block(block: np.ndarray, where: slice) -> tuple[str | None, np.ndarray]:
    """What is wrong with a block of counts (None if nothing), and which of its genes have a non-zero count."""
    return _count_problem(block, where), (block != 0).any(axis=0)


def _moments(block: np.ndarray, sf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (ddof 1) of each gene's normalised counts in a samples x genes block.

    Each gene gets the same bits whatever block it is in: numpy sums a C-ordered block row by row when it has
    two genes or more, so a single gene is doubled.
    """
    single = block.shape[1] == 1
    normed = (np.repeat(block, 2, axis=1) if single else block) / sf[:, None]
    mean, var = normed.mean(0), normed.var(0, ddof=1)
    return (mean[:1], var[:1]) if single else (mean, var)


def _trend_and_prior(fit_type, base_mean, gene_disp, nz, ctx, n, p):
    """The dispersion trend on the non-zero genes, the fitted dispersions and the prior variance."""
    trend, coeffs, used_type = _trend_function(fit_type, base_mean[nz], gene_disp[nz], ctx.min_disp)
    fitted = np.full(base_mean.size, np.nan)
    fitted[nz] = trend(base_mean[nz])
    if not np.any(gene_disp[nz] >= ctx.min_disp * 100):
        warnings.warn(
            f"all genes have dispersion estimates < {ctx.min_disp * 10}; returning disp = {ctx.min_disp * 10}",
            stacklevel=4,
        )
        prior_var, var_log = 0.25, np.nan
    else:
        prior_var, var_log = prior_variance(gene_disp[nz], fitted[nz], n, p, ctx.min_disp)
    return trend, coeffs, used_type, fitted, prior_var, var_log


def _new_stage2_out(x, all_zero, keep_matrices, min_replicates):
    n, p = x.shape
    return _Stage2Out.empty(
        n,
        p,
        all_zero,
        keep_matrices,
        samples_for_cooks=n_or_more_in_cell(x, 3),
        replaceable=n_or_more_in_cell(x, min_replicates),
        cutoff=stats.f.ppf(0.99, p, n - p),
    )


def _run(cnt, x, names, sf, ctx, fit_type, min_replicates, refit_cooks, chunk_size, keep_matrices, n_threads):
    n, p = x.shape
    g_all = cnt.shape[1]
    base_mean = np.empty(g_all)
    base_var = np.empty(g_all)
    step = max(1, 4_000_000 // n)

    def moments(sl):
        mean, var = _moments(cnt[:, sl : sl + step], sf)
        base_mean[sl : sl + mean.size] = mean
        base_var[sl : sl + mean.size] = var

    parallel_for(moments, range(0, g_all, step), n_threads)
    all_zero = base_mean == 0
    nz = np.flatnonzero(~all_zero)

    gene_disp, gene_iters = np.full(g_all, np.nan), np.zeros(g_all, dtype=np.int64)
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

    # --- trend and prior, then stage 2: MAP dispersions, GLM, Cook's distances
    trend, coeffs, used_type, fitted, prior_var, var_log = _trend_and_prior(
        fit_type, base_mean, gene_disp, nz, ctx, n, p
    )
    out = _new_stage2_out(x, all_zero, keep_matrices, min_replicates)

    def stage2(idx):
        y = ctx.t(cnt[:, idx].T.astype(np.float64))
        mu = ctx.t(mu_disp[idx]) if keep_matrices else _disp_start_and_mu(y, ctx)[1]
        _stage2(y, mu, idx, ctx, gene_disp, fitted, prior_var, var_log, out)

    parallel_for(stage2, _chunks(nz, chunk_size), n_threads)
    est = {"base_mean": base_mean, "base_var": base_var, "gene_disp": gene_disp, "gene_iters": gene_iters}
    est["all_zero"] = all_zero
    trend_fit = (trend, coeffs, used_type, fitted, prior_var, var_log)
    return _complete(cnt, cnt, x, names, sf, ctx, out, est, trend_fit, refit_cooks, chunk_size)


def _complete(cnt, refit_counts, x, names, sf, ctx, out, est, trend_fit, refit_cooks, chunk_size) -> DESeq2Fit:
    """Cook's bookkeeping, outlier replacement and refit, and the :class:`DESeq2Fit` (both paths)."""
    n = x.shape[0]
    trend, coeffs, used_type, fitted, prior_var, var_log = trend_fit
    base_mean, base_var, gene_disp, gene_iters = (est[k] for k in ("base_mean", "base_var", "gene_disp", "gene_iters"))
    g_all = base_mean.size
    max_cooks = out.max_cooks_all if out.samples_for_cooks.any() else np.full(g_all, np.nan)
    replaced = np.zeros(g_all, dtype=bool)
    refitted = np.zeros(g_all, dtype=bool)
    rep_idx = np.zeros(0, dtype=np.int64)
    rep_counts = np.zeros((n, 0))
    if refit_cooks and out.replaceable.any():
        replaced, refitted, rep_idx, rep_counts, max_cooks = replace_outliers_and_refit(
            refit_counts,
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
        all_zero=est["all_zero"],
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
        cooks=out.cooks,
        max_cooks=max_cooks,
        cooks_argmax=out.cooks_argmax,
        replaceable=out.replaceable,
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
    result.extras["samples_for_cooks"] = out.samples_for_cooks
    result.extras["cooks_cutoff"] = float(out.cutoff)
    if isinstance(refit_counts, _SomeGenes):
        result.extras["outlier_columns"] = (refit_counts.genes, refit_counts.values)
    return result


# ----------------------------------------------------------------------------------------------------------------
# dask counts: the same stages as maps over gene blocks, each block holding whole batches of the in-memory path
# ----------------------------------------------------------------------------------------------------------------
#: per-gene outputs of stage 2 gathered from the blocks
_STAGE2_FIELDS = (
    "map",
    "final",
    "outlier",
    "map_iters",
    "beta",
    "se",
    "cov",
    "conv",
    "iters",
    "loglik",
    "max_cooks_all",
    "max_cooks_any",
    "max_cooks_nonrepl",
    "cooks_argmax",
)


def _genes_per_block(n: int) -> int:
    """Genes per dask block: the block's counts and one float copy of them within the block budget."""
    return block_size(n, n_arrays=2)


#: at least this many blocks per stage where there are enough batches (to keep every worker or thread busy)
_MIN_BLOCKS = 8


def batches_per_block(n: int, batch: int, n_genes: int) -> int:
    """Batches of ``batch`` genes per dask block: within the block budget, and at least :data:`_MIN_BLOCKS`."""
    n_batches = -(-n_genes // max(batch, 1))
    return max(1, min(_genes_per_block(n) // batch, -(-n_batches // _MIN_BLOCKS)))


def _gene_ranges(g_all: int, size: int) -> list[slice]:
    return [slice(a, min(a + size, g_all)) for a in range(0, g_all, size)]


def block_plan(g_all: int, genes: np.ndarray, batch: int, per_block: int) -> tuple[list[slice], list[list]]:
    """Gene ranges covering ``0..g_all`` and, for each, the batches of ``genes`` it holds.

    ``genes`` (sorted) are cut into batches of ``batch`` exactly as the in-memory path cuts them, and
    ``per_block`` consecutive batches make one block, so that every batch is computed on the same genes either
    way (the kernels' last bits depend on which genes share a batch).
    """
    batches = [genes[a : a + batch] for a in range(0, genes.size, batch)]
    groups = [batches[a : a + per_block] for a in range(0, len(batches), per_block)] or [[]]
    starts = [0] + [int(grp[0][0]) for grp in groups[1:]]
    where = [slice(a, b) for a, b in zip(starts, [*starts[1:], g_all], strict=True)]
    return where, groups


def _read_columns(counts: Any, genes: np.ndarray) -> np.ndarray:
    """A few gene columns of a dask count matrix as a C-ordered NumPy array (one read on the active scheduler)."""
    if genes.size == 0:
        return np.zeros((counts.shape[0], 0), dtype=counts.dtype)
    return np.ascontiguousarray(np.asarray(counts[:, genes].compute()))


class _SomeGenes:
    """The columns of the genes with a Cook's outlier, read once: all the outlier refit takes from the counts."""

    def __init__(self, counts: Any, genes: np.ndarray):
        self.shape = counts.shape
        self.genes = np.asarray(genes, dtype=np.int64)
        self.values = _read_columns(counts, self.genes)

    def __getitem__(self, key):
        rows, genes = key
        return self.values[rows][:, np.searchsorted(self.genes, genes)]


def _quiet(func):
    """``func`` with numpy's floating-point warnings off (dask runs it in other threads or processes)."""

    def run(block, where):
        with np.errstate(all="ignore"):
            return func(block, where)

    return run


def _run_lazy(cnt, x, names, sf, ctx, fit_type, min_replicates, refit_cooks, chunk_size, *, nonzero):
    n, p = x.shape
    g_all = cnt.shape[1]
    nz = np.flatnonzero(nonzero)
    cells = _cells(x)
    n_cells = int(cells.max()) + 1
    step = max(1, 4_000_000 // n)
    where, groups = block_plan(g_all, nz, chunk_size, batches_per_block(n, chunk_size, nz.size))
    plan = {sl.start: grp for sl, grp in zip(where, groups, strict=True)}

    def batch_counts(block, sl, idx):
        return ctx.t(block[:, idx - sl.start].T.astype(np.float64))

    # --- moments, per-cell totals (for the Wald tests' zero-count rule) and stage 1: gene-wise dispersions
    def stage1(block, sl):
        parts = [_moments(block[:, a : a + step], sf) for a in range(0, block.shape[1], step)]
        totals = np.stack([block[cells == c].sum(0, dtype=np.int64) for c in range(n_cells)])
        res = [_genewise(batch_counts(block, sl, idx), ctx) for idx in plan[sl.start]]
        disp = [ctx.np(r["disp"]) for r in res]
        iters = [ctx.np(r["iters"]) for r in res]
        return [m for m, _ in parts], [v for _, v in parts], totals, disp, iters

    first = map_slices(_quiet(stage1), cnt, where)
    base_mean = np.concatenate([m for r in first for m in r[0]])
    base_var = np.concatenate([v for r in first for v in r[1]])
    gene_disp, gene_iters = np.full(g_all, np.nan), np.zeros(g_all, dtype=np.int64)
    gene_disp[nz] = np.concatenate([np.zeros(0), *(d for r in first for d in r[3])])
    gene_iters[nz] = np.concatenate([np.zeros(0, dtype=np.int64), *(i for r in first for i in r[4])])
    cell_totals = np.concatenate([r[2] for r in first], axis=1)
    all_zero = ~nonzero

    trend_fit = _trend_and_prior(fit_type, base_mean, gene_disp, nz, ctx, n, p)
    _, _, _, fitted, prior_var, var_log = trend_fit
    out = _new_stage2_out(x, all_zero, False, min_replicates)

    # --- stage 2: MAP dispersions, GLM, Cook's distances, gathered per block
    def stage2(block, sl):
        batches = plan[sl.start]
        genes = np.concatenate([np.zeros(0, dtype=np.int64), *batches])
        local = _new_stage2_out(x, np.zeros(genes.size, dtype=bool), False, min_replicates)
        gd, ft, at = gene_disp[genes], fitted[genes], 0
        for idx in batches:
            y = batch_counts(block, sl, idx)
            mu = _disp_start_and_mu(y, ctx)[1]
            _stage2(y, mu, np.arange(at, at + idx.size), ctx, gd, ft, prior_var, var_log, local)
            at += idx.size
        return genes, {f: getattr(local, f) for f in _STAGE2_FIELDS}, {int(genes[k]): v for k, v in local.above.items()}

    for genes, fields, above in map_slices(_quiet(stage2), cnt, where):
        for f, values in fields.items():
            getattr(out, f)[genes] = values
        out.above.update(above)

    est = {"base_mean": base_mean, "base_var": base_var, "gene_disp": gene_disp, "gene_iters": gene_iters}
    est["all_zero"] = all_zero
    outliers = np.flatnonzero(np.nan_to_num(out.max_cooks_any, nan=-np.inf) > out.cutoff)
    result = _complete(cnt, _SomeGenes(cnt, outliers), x, names, sf, ctx, out, est, trend_fit, refit_cooks, chunk_size)
    result.extras["cells"] = cells
    result.extras["cell_totals"] = cell_totals
    return result
