"""Data-driven initialisation of the NB-VAE: PCA codes, per-gene NB GLM fits and empirical-Bayes dispersions.

Starting the gradient phase here (instead of at random) is what makes the model train in a few hundred full-batch
epochs on a dozen samples: the encoder starts at the PCA embedding, every gene's decoder at the NB GLM fit on
those codes, and the dispersions at DESeq2's empirical-Bayes estimates given those fits.
"""

from __future__ import annotations

import numpy as np
import torch
from scvi import REGISTRY_KEYS

from . import _dispersion
from ._data import read_rows
from ._module import covariate_design

DTYPE = torch.float64
#: At most this many samples enter the initial GLM and dispersion fits (PCA uses up to 1,000): per-gene fits
#: of a few coefficients are precise long before, and their cost grows with samples x genes x grid points.
FIT_SAMPLES = 200


def covariate_shapes(mgr) -> tuple[list[int], int]:
    """``(n_cats_per_cov, n_continuous_cov)`` of the covariates registered in an ``AnnDataManager``."""
    reg = mgr.data_registry
    n_cats: list[int] = []
    n_cont = 0
    if REGISTRY_KEYS.CAT_COVS_KEY in reg:
        n_cats = list(mgr.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY).n_cats_per_key)
    if REGISTRY_KEYS.CONT_COVS_KEY in reg:
        n_cont = len(mgr.get_state_registry(REGISTRY_KEYS.CONT_COVS_KEY).columns)
    return n_cats, n_cont


def placeholder_parameters(n_genes: int, n_latent: int, n_cov_features: int) -> dict[str, np.ndarray | float]:
    """Zero-valued parameters of the right shapes, for a model whose weights are about to be loaded."""
    z = np.zeros
    return {
        "intercept": z(n_genes),
        "loadings": z((n_genes, n_latent)),
        "cov_coef": z((n_genes, n_cov_features)),
        "encoder_centre": z(n_genes),
        "encoder_basis": z((n_genes, n_latent)),
        "encoder_cov_effect": z((n_cov_features, n_genes)),
        "log_disp": z(n_genes),
        "log_disp_prior_mean": z(n_genes),
        "disp_prior_var": 1.0,
    }


def initial_parameters_from_manager(
    mgr, n_latent: int, weight_prior_sd: float, cov_prior_sd: float = 10.0
) -> tuple[dict, list[int], int]:
    """Initial values from the data registered in an scvi-tools ``AnnDataManager``, plus the covariate shapes.

    Returns ``(init, n_cats_per_cov, n_continuous_cov)``; see :func:`initial_parameters`.
    """
    reg = mgr.data_registry
    cat = cont = None
    n_cats: list[int] = []
    if REGISTRY_KEYS.CAT_COVS_KEY in reg:
        n_cats = list(mgr.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY).n_cats_per_key)
        cat = torch.as_tensor(np.asarray(mgr.get_from_registry(REGISTRY_KEYS.CAT_COVS_KEY), dtype=np.int64))
    if REGISTRY_KEYS.CONT_COVS_KEY in reg:
        cont = torch.as_tensor(np.asarray(mgr.get_from_registry(REGISTRY_KEYS.CONT_COVS_KEY), dtype=np.float32))
    n_cont = 0 if cont is None else cont.shape[1]
    rows = init_rows(mgr.adata.n_obs)
    cov_design = covariate_design(cat, cont, n_cats, n_cont)
    feats = np.zeros((len(rows), 0)) if cov_design is None else cov_design.numpy().astype(np.float64)[rows]
    counts = read_rows(mgr.get_from_registry(REGISTRY_KEYS.X_KEY), rows)  # float64, read in row blocks
    sf = np.asarray(mgr.get_from_registry(REGISTRY_KEYS.SIZE_FACTOR_KEY), dtype=np.float64).ravel()[rows]
    init = initial_parameters(counts, sf, feats, n_latent, weight_prior_sd, cov_prior_sd, overwrite=True)
    return init, n_cats, n_cont


def init_rows(n_obs: int, max_samples: int = 1000) -> np.ndarray:
    """Indices of the samples used for the initialisation: all, or ``max_samples`` evenly spaced ones."""
    return np.arange(n_obs) if n_obs <= max_samples else np.linspace(0, n_obs - 1, max_samples).astype(int)


def pca_projection(u: np.ndarray, n_latent: int, max_samples: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Centre of ``u`` and the ``(G, n_latent)`` projection onto principal scores.

    All scores share one scale, chosen so that the first has unit variance: the latent space keeps PCA's
    geometry (the dominant axis of variation stays dominant). Uses at most ``max_samples`` evenly spaced samples
    (the Gram matrix is ``n x n``). Dimensions beyond the rank of the data get a zero projection.
    """
    rows = init_rows(u.shape[0], max_samples)
    sub = u if len(rows) == u.shape[0] else u[rows]  # all samples: no copy
    g = u.shape[1]
    centre = sub.mean(0)
    xc = sub - centre
    evals, evecs = np.linalg.eigh(xc @ xc.T)
    order = np.argsort(evals)[::-1][: min(n_latent, xc.shape[0])]
    svals = np.sqrt(np.maximum(evals[order], 0.0))
    projection = np.zeros((g, n_latent))
    scale = svals[0] / np.sqrt(max(sub.shape[0] - 1, 1)) if len(svals) else 1.0
    for j, v in enumerate(evecs[:, order].T):
        if svals[j] > 1e-8 * max(svals[0], 1e-300):
            projection[:, j] = (v @ xc) / svals[j] / scale
    return centre, projection


def fit_nb_glm(
    y: torch.Tensor,
    size_factors: torch.Tensor,
    design: torch.Tensor,
    log_alpha: torch.Tensor,
    beta: torch.Tensor,
    prior_precision: torch.Tensor,
    n_iter: int = 20,
    *,
    firth: bool = False,
    offset: torch.Tensor | None = None,
    tol: float = 1e-6,
    max_elements: int | None = None,
) -> torch.Tensor:
    """Penalised NB GLM fits (log link, offsets ``log s``) of all genes at once by clipped Newton steps.

    ``y`` ``(n, G)``, ``design`` ``(n, p)``, ``log_alpha`` ``(G,)``, start ``beta`` ``(G, p)``, ``prior_precision``
    ``(p, p)``. Each step is clipped to at most 1 per coefficient, which keeps genes with separation finite. A gene
    whose step has fallen below ``tol`` in every coefficient is converged and leaves the iterations (most genes
    converge in a few steps; those with separation keep stepping towards their finite penalised optimum).

    With ``firth`` the score is Firth's: for the log link and a fixed dispersion the Jeffreys penalty
    ``log det(X^T W X + lam) / 2`` adds half of each sample's leverage ``h_i = w_i x_i^T (X^T W X + lam)^-1 x_i``
    to its count (``(y_i + h_i / 2 - mu_i) / (1 + alpha mu_i)``), so a gene whose counts are zero in a whole
    cell of the design (separation: no finite maximum-likelihood estimate) gets a finite estimate, while the
    estimates of genes with counts move by ``O(1 / n)``. ``offset`` ``(n, G)`` is added to every linear
    predictor. ``max_elements`` bounds the genes fitted together (about ``max_elements / (n p)``); None fits all.
    """
    n, (g_total, p) = design.shape[0], beta.shape
    beta = beta.clone()
    alpha_all = torch.exp(log_alpha)
    xx = design[:, :, None] * design[:, None, :]
    chunk = g_total if max_elements is None else max(1, min(g_total, max_elements // (n * p * (1 + firth))))
    for a in range(0, g_total, chunk):
        genes: slice | torch.Tensor = slice(a, min(a + chunk, g_total))  # the genes still moving
        y_a, alpha_a = y[:, genes], alpha_all[genes]  # views while every gene moves, copies once some stop
        off_a = None if offset is None else offset[:, genes]
        for _ in range(n_iter):
            b = beta[genes]
            eta = design @ b.T if off_a is None else design @ b.T + off_a
            mu = size_factors[:, None] * torch.exp(torch.clamp(eta, max=40.0))
            w = mu / (1.0 + alpha_a * mu)
            info = torch.einsum("ng,npq->gpq", w, xx) + prior_precision
            resid = y_a - mu
            if firth:
                chol = torch.linalg.cholesky(info)
                root = torch.linalg.solve_triangular(chol, design.T.expand(b.shape[0], p, n), upper=False)
                resid = resid + 0.5 * w * root.square().sum(1).T
            score = (resid / (1.0 + alpha_a * mu)).T @ design - b @ prior_precision
            if firth:
                step = torch.cholesky_solve(score.unsqueeze(-1), chol).squeeze(-1)
            else:
                step = torch.linalg.solve(info, score)
            beta[genes] = b + torch.clamp(step, -1.0, 1.0)
            moving = step.abs().amax(1) >= tol
            if not bool(moving.any()):
                break
            if not bool(moving.all()):
                if isinstance(genes, slice):
                    genes = torch.arange(genes.start, genes.stop, device=beta.device)
                genes = genes[moving]
                y_a, alpha_a = y[:, genes], alpha_all[genes]
                off_a = None if offset is None else offset[:, genes]
    return beta


def initial_parameters(
    counts: np.ndarray,
    size_factors: np.ndarray,
    cov_features: np.ndarray,
    n_latent: int,
    weight_prior_sd: float,
    cov_prior_sd: float = 10.0,
    *,
    overwrite: bool = False,
) -> dict[str, np.ndarray | float]:
    """All initial values of :class:`~gendex.model.NBVAEModule` (see the module docstring).

    ``counts`` ``(n, G)``, ``size_factors`` ``(n,)`` and ``cov_features`` ``(n, f)`` of the samples chosen by
    :func:`init_rows`. With ``overwrite`` (float64 ``counts`` only) the counts' memory holds the log-normalised
    values as they are computed, so one ``n x G`` array less is in memory (the values are the same).
    """
    r = init_rows(len(counts), FIT_SAMPLES)
    y = torch.as_tensor(np.asarray(counts[r]), dtype=DTYPE)  # the GLM and dispersion fits' samples (a copy)
    inplace = overwrite and isinstance(counts, np.ndarray) and counts.dtype == np.float64
    norm = np.divide(counts, size_factors[:, None], out=counts if inplace else None)
    base_mean = norm.mean(0)
    log_trend0 = np.log(_moments_trend(norm, size_factors, base_mean))
    u = np.log1p(norm, out=norm)  # norm is not needed any more
    f = cov_features.shape[1]
    cov_effect = np.zeros((f, u.shape[1]))
    if f:  # remove the covariates' least-squares effects: the codes describe what the covariates do not
        xc = np.column_stack([np.ones(len(u)), cov_features])
        cov_effect = np.linalg.lstsq(xc, u, rcond=None)[0][1:]
        u -= cov_features @ cov_effect
    centre, basis = pca_projection(u, n_latent)
    z0 = (u - centre) @ basis[:, :n_latent]
    del u, norm
    design_np = np.column_stack([np.ones(len(r)), z0[r], cov_features[r]])
    sf = torch.as_tensor(size_factors[r], dtype=DTYPE)
    design = torch.as_tensor(design_np, dtype=DTYPE)
    p = design.shape[1]
    prec = torch.diag(
        torch.as_tensor([1e-8] + [weight_prior_sd**-2.0] * n_latent + [cov_prior_sd**-2.0] * f, dtype=DTYPE)
    )
    beta0 = torch.zeros(counts.shape[1], p, dtype=DTYPE)
    beta0[:, 0] = torch.as_tensor(np.log(np.maximum(base_mean, 1e-8)))
    beta = fit_nb_glm(y, sf, design, torch.as_tensor(log_trend0), beta0, prec)
    mu = sf[:, None] * torch.exp(torch.clamp(design @ beta.T, max=40.0))
    moments = design[:, :, None] * design[:, None, :]
    disp = _dispersion.fit_dispersions(y, mu, moments, base_mean, fast=True)
    beta = fit_nb_glm(y, sf, design, torch.as_tensor(disp.log_final), beta, prec, n_iter=5)
    coef = beta.numpy()
    return {
        "intercept": coef[:, 0],
        "loadings": coef[:, 1 : 1 + n_latent],
        "cov_coef": coef[:, 1 + n_latent :],
        "encoder_centre": centre,
        "encoder_basis": basis,
        "encoder_cov_effect": cov_effect,
        "log_disp": disp.log_final,
        "log_disp_prior_mean": disp.log_trend,
        "disp_prior_var": disp.prior_var,
    }


def _moments_trend(norm: np.ndarray, size_factors: np.ndarray, base_mean: np.ndarray) -> np.ndarray:
    """DESeq2's trend fitted to moments estimates of the dispersion (a start value only)."""
    var = norm.var(0, ddof=1) if norm.shape[0] > 1 else np.zeros(norm.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        mom = (var - base_mean * np.mean(1.0 / size_factors)) / base_mean**2
    mom = np.where(np.isfinite(mom), np.maximum(mom, _dispersion.MIN_DISP), _dispersion.MIN_DISP)
    return _dispersion.fit_trend(base_mean, mom)[2]
