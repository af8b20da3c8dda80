"""``deseq2_fit``: R DESeq2's ``DESeq()`` (size factors, dispersions, GLM, Cook's, outlier refit) for all genes."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .._size_factors import size_factors_ratio
from .._threads import default_threads, parallel_for
from . import _kernels as K
from ._backend import get_backend, single_threaded_blas
from ._optim import nb_logpmf_np, optim_row
from ._trend import TrendFitError, local_trend, parametric_trend, prior_variance

logger = logging.getLogger(__name__)

LOG2E = 1.0 / math.log(2.0)
#: R's default ridge on log2 coefficients (a N(0, 1e6) prior), converted in the kernels
RIDGE_LOG2 = 1e-6


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
# helpers
# ----------------------------------------------------------------------------------------------------------------
def _cells(design: np.ndarray) -> np.ndarray:
    """Integer cell label per sample: samples with identical design rows share a cell."""
    _, inv = np.unique(design, axis=0, return_inverse=True)
    return inv.ravel()


def n_or_more_in_cell(design: np.ndarray, n: int) -> np.ndarray:
    """R's ``nOrMoreInCell``: samples whose design row occurs at least ``n`` times."""
    cells = _cells(design)
    return np.bincount(cells)[cells] >= n


def _trimmed_mean(be, sorted_vals, trim: float):
    """R's ``mean(x, trim=trim)`` along the last axis of an already sorted array."""
    n = sorted_vals.shape[-1]
    if trim >= 0.5:
        lo = (n - 1) // 2
        return 0.5 * (sorted_vals[..., lo] + sorted_vals[..., n - 1 - lo])
    lo = int(math.floor(n * trim))
    return sorted_vals[..., lo : n - lo].mean(-1)


def _sort_rows(be, a):
    return be.xp.sort(a, 1) if be.name == "numpy" else be.torch.sort(a, dim=1).values


def robust_moments_disp(be, normed, design: np.ndarray):
    """R's ``robustMethodOfMomentsDisp`` for ``normed`` (G, n) normalised counts."""
    three = n_or_more_in_cell(design, 3)
    if three.any():
        cells = _cells(design)
        counts = np.bincount(cells)
        var_est = []
        for c in range(counts.size):
            if counts[c] < 3:
                continue
            sub = normed[:, be.index(np.flatnonzero(cells == c))]
            nc = sub.shape[1]
            k = 0 if nc <= 3.5 else (1 if nc <= 23.5 else 2)
            trim = (1 / 3, 1 / 4, 1 / 8)[k]
            scale = (2.04, 1.86, 1.51)[k]
            cm = _trimmed_mean(be, _sort_rows(be, sub), trim)
            sq = (sub - cm[:, None]) ** 2
            var_est.append(scale * _trimmed_mean(be, _sort_rows(be, sq), trim))
        v = be.amax(be.stack(var_est, 1), 1)
    else:
        rm = _trimmed_mean(be, _sort_rows(be, normed), 1 / 8)
        sq = (normed - rm[:, None]) ** 2
        v = 1.51 * _trimmed_mean(be, _sort_rows(be, sq), 1 / 8)
    m = normed.mean(1)
    return be.clip((v - m) / m**2, 0.04, None)


class _Ctx:
    """Constants shared by the stages of one fit."""

    def __init__(self, design, sf, *, min_mu, min_disp, max_disp, beta_tol, device):
        self.be = get_backend(device)
        self.device = str(device)
        self.design = np.asarray(design, dtype=np.float64)
        self.n, self.p = self.design.shape
        self.ops = K.DesignOps(self.be, self.design)
        self.sf_np = np.asarray(sf, dtype=np.float64)
        self.sf = self.be.asarray(self.sf_np)
        self.min_mu = min_mu
        self.min_disp = min_disp
        self.max_disp = max(max_disp, self.n)
        self.beta_tol = beta_tol
        q, r = np.linalg.qr(self.design)
        self.q = self.be.asarray(q)
        self.qt = self.be.asarray(np.ascontiguousarray(q.T))
        self.pinv_t = self.be.asarray(np.ascontiguousarray(np.linalg.solve(r, q.T).T))  # (n, p)
        self.linear_mu = np.unique(self.design, axis=0).shape[0] == self.p
        self.intercept_only = self.p == 1 and bool(np.all(self.design == 1))
        self.ridge = np.full(self.p, RIDGE_LOG2 / math.log(2.0) ** 2)

    def t(self, a):
        return self.be.asarray(a)

    def np(self, a) -> np.ndarray:
        return self.be.to_numpy(a)


@dataclass
class _GLM:
    beta: object  # (G, p) natural log
    cov: object  # (P, G)
    hat: object  # (G, n)
    mu: object  # (G, n) unclamped
    loglik: object
    conv: object
    iters: object


def fit_glm(y, alpha, ctx: _Ctx, *, maxit: int = 100, use_optim: bool = True) -> _GLM:
    """R's ``fitNbinomGLMs`` (without prior) for the genes of ``y`` (G, n): IRLS, then optim for failures."""
    be, ops = ctx.be, ctx.ops
    g = y.shape[0]
    p = ctx.p
    sf = ctx.sf
    normed = y / sf
    if ctx.intercept_only:
        bm = normed.mean(1)
        beta = be.log(bm)[:, None]
        mu = sf[None, :] * bm[:, None]
        w = 1.0 / (1.0 / mu + alpha[:, None])
        info = w.sum(1)
        cov = (1.0 / info)[None, :]
        hat = w / info[:, None]
        ll = K.nb_loglik(be, y, mu, alpha)
        return _GLM(beta, cov, hat, mu, ll, be.isfinite(ll) | True, be.zeros_int(g) + 1)
    beta0 = be.log(normed + 0.1) @ ctx.pinv_t
    bf = K.fit_beta(ops, y, sf, alpha, beta0, ctx.ridge, tol=ctx.beta_tol, maxit=maxit, min_mu=ctx.min_mu)
    beta = bf.beta
    mu = sf[None, :] * be.exp(beta @ ops.xt)
    conv = bf.iters < maxit
    stable = ~be.isnan(beta).any(1)
    varpos = be.stack([bf.cov[k] > 0 for k in ops.diag_k], 1).all(1)
    ll = bf.loglik_const + K.nb_loglik_mu(be, y, mu, alpha)
    cov = bf.cov
    bad = (~conv | ~stable | ~varpos) if use_optim else (~stable | ~varpos)
    rows = ctx.np(be.flatnonzero(bad))
    if rows.size:
        xn = ctx.design
        sfn = ctx.sf_np
        lam_log2 = np.full(p, RIDGE_LOG2)
        ridge_nat = np.diag(lam_log2 / math.log(2.0) ** 2)
        ridx = be.index(rows)
        beta_np = ctx.np(beta[ridx])
        beta0_np = ctx.np(beta0[ridx])
        stable_np = ctx.np(stable[ridx])
        y_np = ctx.np(y[ridx])
        alpha_np = ctx.np(alpha[ridx])
        new_beta = np.empty((rows.size, p))
        new_cov = np.empty((ops.P, rows.size))
        new_mu = np.empty((rows.size, ctx.n))
        new_ll = np.empty(rows.size)
        new_ok = np.empty(rows.size, dtype=bool)
        for k in range(rows.size):
            b_log2 = beta_np[k] * LOG2E
            start = b_log2 if (stable_np[k] and np.all(np.abs(b_log2) < 30)) else beta0_np[k]
            par, ok = optim_row(y_np[k], xn, sfn, float(alpha_np[k]), start, lam_log2)
            mu_row = sfn * np.exp2(xn @ par)
            mu_cl = np.maximum(mu_row, ctx.min_mu)
            w = 1.0 / (1.0 / mu_cl + alpha_np[k])
            info = (xn * w[:, None]).T @ xn
            inv = np.linalg.inv(info + ridge_nat)
            sw = inv @ info @ inv
            new_beta[k] = par * math.log(2.0)
            new_cov[:, k] = [sw[i, j] for i, j in ops.pairs]
            new_mu[k] = mu_row
            new_ll[k] = float(nb_logpmf_np(y_np[k], mu_cl, float(alpha_np[k])).sum())
            new_ok[k] = ok
        beta, cov, mu, ll, conv = be.copy(beta), be.copy(cov), be.copy(mu), be.copy(ll), be.copy(conv)
        beta[ridx] = be.asarray(new_beta)
        cov[:, ridx] = be.asarray(new_cov)
        mu[ridx] = be.asarray(new_mu)
        ll[ridx] = be.asarray(new_ll)
        conv[ridx] = conv[ridx] | (be.asarray(new_ok.astype(np.float64)) > 0.5)
    return _GLM(beta, cov, bf.hat, mu, ll, conv, bf.iters)


def _rough_disp(normed, ctx: _Ctx):
    """R's ``roughDispEstimate`` on normalised counts."""
    be = ctx.be
    mu = be.clip((normed @ ctx.q) @ ctx.qt, 1.0, None)
    est = (((normed - mu) ** 2 - mu) / mu**2).sum(1) / (ctx.n - ctx.p)
    return be.clip(est, 0.0, None)


def _disp_start_and_mu(y, ctx: _Ctx):
    """Rough/moments starting dispersions and the (clamped) means used for the gene-wise dispersions."""
    be = ctx.be
    normed = y / ctx.sf
    bm = normed.mean(1)
    bv = ((normed - bm[:, None]) ** 2).sum(1) / (ctx.n - 1)
    xim = float(np.mean(1.0 / ctx.sf_np))
    moments = (bv - xim * bm) / bm**2
    alpha0 = be.minimum(_rough_disp(normed, ctx), moments)
    alpha0 = be.clip(alpha0, ctx.min_disp, ctx.max_disp)
    if ctx.linear_mu:
        mu = ((normed @ ctx.q) @ ctx.qt) * ctx.sf
    else:
        mu = fit_glm(y, alpha0, ctx).mu
    return alpha0, be.clip(mu, ctx.min_mu, None)


def _genewise(y, ctx: _Ctx) -> dict:
    """R's ``estimateDispersionsGeneEst`` for the (non-all-zero) genes of ``y`` (G, n)."""
    be = ctx.be
    alpha0, mu = _disp_start_and_mu(y, ctx)
    res = K.fit_disp(
        ctx.ops, y, mu, be.log(alpha0), prior_mean=None, prior_var=1.0, min_log_alpha=math.log(ctx.min_disp / 10)
    )
    disp = be.clip(be.exp(res.log_alpha), None, ctx.max_disp)
    no_increase = res.last_lp < res.initial_lp + be.abs(res.initial_lp) / 1e6
    disp = be.where(no_increase, alpha0, disp)
    conv = (res.iters < 100) & (res.iters != 1)
    idx = be.flatnonzero(~conv & (disp > ctx.min_disp * 10))
    if idx.shape[0]:
        disp[idx] = K.fit_disp_grid(ctx.ops, y[idx], mu[idx], prior_mean=None, prior_var=1.0, max_disp=ctx.max_disp)
    disp = be.clip(disp, ctx.min_disp, ctx.max_disp)
    return {"disp": disp, "iters": res.iters, "mu": mu}


def _map(y, mu, gene, fitted, ctx: _Ctx, prior_var: float, var_log: float) -> dict:
    """R's ``estimateDispersionsMAP`` (line search with prior, grid fallback, outliers keep gene-wise)."""
    be = ctx.be
    init = be.where(gene > 0.1 * fitted, gene, fitted)
    init = be.where(be.isnan(init), fitted, init)
    prior_mean = be.log(fitted)
    res = K.fit_disp(
        ctx.ops,
        y,
        mu,
        be.log(init),
        prior_mean=prior_mean,
        prior_var=prior_var,
        min_log_alpha=math.log(ctx.min_disp / 10),
    )
    disp_map = be.exp(res.log_alpha)
    idx = be.flatnonzero(res.iters >= 100)
    if idx.shape[0]:
        disp_map[idx] = K.fit_disp_grid(
            ctx.ops, y[idx], mu[idx], prior_mean=prior_mean[idx], prior_var=prior_var, max_disp=ctx.max_disp
        )
    disp_map = be.clip(disp_map, ctx.min_disp, ctx.max_disp)
    outlier = be.log(gene) > be.log(fitted) + 2.0 * math.sqrt(var_log) if np.isfinite(var_log) else gene < 0
    final = be.where(outlier, gene, disp_map)
    return {"map": disp_map, "final": final, "outlier": outlier, "iters": res.iters}


def _wald_fit(y, disp, ctx: _Ctx) -> dict:
    """GLM fit with final dispersions plus Cook's distances (R's ``nbinomWaldTest``)."""
    glm = fit_glm(y, disp, ctx)
    alpha_rm = robust_moments_disp(ctx.be, y / ctx.sf, ctx.design)
    v = glm.mu + alpha_rm[:, None] * glm.mu**2
    cooks = (y - glm.mu) ** 2 / v / ctx.p * glm.hat / (1.0 - glm.hat) ** 2
    return {
        "beta": glm.beta,
        "cov": glm.cov,
        "hat": glm.hat,
        "mu": glm.mu,
        "loglik": glm.loglik,
        "conv": glm.conv,
        "iters": glm.iters,
        "cooks": cooks,
    }


def _chunks(idx: np.ndarray, size: int):
    for start in range(0, idx.size, size):
        yield idx[start : start + size]


def _trend_function(fit_type, base_mean, gene_disp, min_disp):
    use = gene_disp > 100 * min_disp
    if not use.any():
        raise ValueError(
            "all gene-wise dispersion estimates are within 2 orders of magnitude of the minimum value, "
            "so the dispersion trend cannot be fitted"
        )
    coeffs = np.array([np.nan, np.nan])
    if fit_type == "parametric":
        try:
            coeffs = parametric_trend(base_mean[use], gene_disp[use])
            return (lambda q: coeffs[0] + coeffs[1] / q), coeffs, "parametric"
        except TrendFitError as err:
            warnings.warn(
                f"the parametric dispersion trend failed ({err}); a local regression was substituted, as R does",
                stacklevel=3,
            )
            fit_type = "local"
    if fit_type == "local":
        return local_trend(base_mean[use], gene_disp[use], min_disp), coeffs, "local"
    if fit_type == "mean":
        use_mean = gene_disp > 10 * min_disp
        vals = np.sort(gene_disp[use_mean])
        lo = int(math.floor(vals.size * 0.001))
        mean_disp = float(vals[lo : vals.size - lo].mean())
        return (lambda q: np.full(np.shape(q), mean_disp)), np.array([mean_disp, np.nan]), "mean"
    raise ValueError(f"`fit_type` must be 'parametric', 'local' or 'mean', got {fit_type!r}")


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
        Dispersion trend: ``"parametric"``, ``"local"`` (an approximation of R's ``locfit`` fit) or ``"mean"``.
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
    >>> ad = gdx.datasets.simulate_counts(n_samples=8, n_genes=300, seed=0)
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
    cnt = np.asarray(cnt, dtype=np.int64)
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
        replaced = np.nan_to_num(out.max_cooks_any, nan=-np.inf) > cutoff
        if replaced.any():
            genes = np.flatnonzero(replaced)
            sub = cnt[:, genes].astype(np.float64)
            normed = sub / sf[:, None]
            srt = np.sort(normed, axis=0)
            lo = int(math.floor(n * 0.2))
            trim_mean = srt[lo : n - lo].mean(0)
            repl = np.trunc(np.outer(sf, trim_mean))
            above = np.stack([out.above[int(g)] for g in genes], 1) & replaceable[:, None]
            new = np.where(above, repl, sub)
            rep_idx, rep_counts = genes, new
            new_bm = (new / sf[:, None]).mean(0)
            base_mean[genes] = new_bm
            base_var[genes] = (new / sf[:, None]).var(0, ddof=1)
            now_zero = new.sum(0) == 0
            do = genes[~now_zero]
            if do.size:
                refitted[do] = True
                fitted[do] = trend(base_mean[do])
                for chunk in _chunks(np.arange(do.size), chunk_size):
                    gidx = do[chunk]
                    y = ctx.t(new[:, ~now_zero][:, chunk].T)
                    res = _genewise(y, ctx)
                    gene_disp[gidx] = ctx.np(res["disp"])
                    gene_iters[gidx] = ctx.np(res["iters"])
                    _stage2(y, res["mu"], gidx, ctx, gene_disp, fitted, prior_var, var_log, out, keep_cooks=False)
            zero_genes = genes[now_zero]
            if zero_genes.size:
                for arr in (out.beta, out.se, out.loglik):
                    arr[zero_genes] = np.nan
                out.cov[zero_genes] = np.nan
            if replaceable.all():
                max_cooks = nanv.copy()
            else:
                max_cooks = out.max_cooks_nonrepl.copy()
        # R stores originalCounts even when nothing was replaced; nothing else to do

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


def _nan_columns(n: int, nan_cols: np.ndarray) -> np.ndarray:
    """An uninitialised ``(n, G)`` matrix whose columns ``nan_cols`` (boolean) are NaN."""
    out = np.empty((n, nan_cols.size))
    out[:, nan_cols] = np.nan
    return out


class _Stage2Out:
    """Accumulates per-gene outputs of the MAP + GLM + Cook's stage."""

    @classmethod
    def empty(cls, n, p, all_zero, keep, *, samples_for_cooks, replaceable, cutoff):
        self = cls()
        g = all_zero.size
        nanv = np.full(g, np.nan)
        self.n, self.keep = n, keep
        self.samples_for_cooks, self.replaceable, self.cutoff = samples_for_cooks, replaceable, cutoff
        self.map, self.final = nanv.copy(), nanv.copy()
        self.outlier = np.zeros(g, dtype=bool)
        self.map_iters = np.zeros(g, dtype=np.int64)
        self.beta = np.full((g, p), np.nan)
        self.se = np.full((g, p), np.nan)
        self.cov = np.full((g, p, p), np.nan)
        self.conv = np.zeros(g, dtype=bool)
        self.iters = np.zeros(g, dtype=np.int64)
        self.loglik = nanv.copy()
        # every gene that is not all zero is written by the fit; filling the matrices first would cost a pass
        self.mu, self.hat, self.cooks = (_nan_columns(n, all_zero) if keep else None for _ in range(3))
        self.max_cooks_all = nanv.copy()  # over samples in cells with >= 3 replicates
        self.max_cooks_any = nanv.copy()  # over all samples
        self.max_cooks_nonrepl = nanv.copy()  # R's value after refitting (replaceable samples zeroed)
        self.cooks_argmax = np.full(g, -1, dtype=np.int64)
        self.above: dict[int, np.ndarray] = {}  # gene -> samples with Cook's distance above the cutoff
        return self

    def record_cooks(self, idx: np.ndarray, cooks: np.ndarray) -> None:
        """Per-gene summaries of Cook's distances ``cooks`` (n, len(idx))."""
        if self.keep:
            self.cooks[:, idx] = cooks
        c = np.nan_to_num(cooks, nan=-np.inf)
        if self.samples_for_cooks.any():
            self.max_cooks_all[idx] = c[self.samples_for_cooks].max(0)
            rest = self.samples_for_cooks & ~self.replaceable
            self.max_cooks_nonrepl[idx] = np.maximum(c[rest].max(0), 0.0) if rest.any() else 0.0
        self.max_cooks_any[idx] = c.max(0)
        self.cooks_argmax[idx] = np.argmax(c, axis=0)
        hit = np.flatnonzero(self.max_cooks_any[idx] > self.cutoff)
        for k in hit:
            self.above[int(idx[k])] = c[:, k] > self.cutoff


def _stage2(y, mu, idx, ctx, gene_disp, fitted, prior_var, var_log, out: _Stage2Out, *, keep_cooks=True):
    gd = ctx.t(gene_disp[idx])
    ft = ctx.t(fitted[idx])
    m = _map(y, mu, gd, ft, ctx, prior_var, var_log)
    wf = _wald_fit(y, m["final"], ctx)
    out.map[idx] = ctx.np(m["map"])
    out.final[idx] = ctx.np(m["final"])
    out.outlier[idx] = ctx.np(m["outlier"])
    out.map_iters[idx] = ctx.np(m["iters"])
    cov_soa = ctx.np(wf["cov"])  # (P, g)
    cov = np.stack([np.stack([cov_soa[ctx.ops.k[(i, j)]] for j in range(ctx.p)], 1) for i in range(ctx.p)], 1)
    out.beta[idx] = ctx.np(wf["beta"])
    out.cov[idx] = cov
    out.se[idx] = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0))
    out.conv[idx] = ctx.np(wf["conv"])
    out.iters[idx] = ctx.np(wf["iters"])
    out.loglik[idx] = ctx.np(wf["loglik"])
    if out.keep:
        out.mu[:, idx] = ctx.np(wf["mu"]).T
        out.hat[:, idx] = ctx.np(wf["hat"]).T
    if keep_cooks:
        out.record_cooks(idx, ctx.np(wf["cooks"]).T)
