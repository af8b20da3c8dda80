"""Posterior draws of the NB-VAE's per-gene parameters and of group log fold changes (torch; no AnnData writes).

Given the latent posterior ``q(z_i) = N(m_i, diag v_i)``, the decoder of gene ``g`` is a negative-binomial GLM
on the features ``x_i = [1, z_i, c_i]``. Its parameters ``beta_g = (b_g, W_g, B_g)`` get a Laplace posterior:
``N(beta_hat_g, H_g(alpha)^-1)`` with ``H_g(alpha) = sum_i w_ig E_q[x_i x_i^T] + Lambda``, NB weights
``w = mu / (1 + alpha mu)`` (the GLM information averaged over ``q(z)``, as the ELBO averages the likelihood) and
the weight prior's precision ``Lambda``. The dispersion's own uncertainty enters by drawing ``log alpha_g`` from
its posterior (computed on a grid by :func:`~gendex.model._dispersion.fit_dispersions`) at the nodes of the bins
of :data:`NODE_BINS`, each with its own ``H_g(alpha)`` (the draws come grouped by node). Latent codes are
drawn from ``q(z)``. A draw of the log fold change between two groups of samples is
``log2 mean_{i in 1} exp(x_i beta) - log2 mean_{i in 2} exp(x_i beta)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from scvi import REGISTRY_KEYS

from .._validation import to_dense
from . import _dispersion
from ._init import fit_nb_glm
from ._module import covariate_design

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

    from ._module import NBVAEModule

DTYPE = torch.float64


class FittedNBVAE(Protocol):
    """What these helpers use of a trained :class:`~gendex.model.NBVAE` (also declared by its DE mixin)."""

    @property
    def adata(self) -> AnnData: ...
    @property
    def adata_manager(self) -> Any: ...
    @property
    def module(self) -> NBVAEModule: ...
    @property
    def device(self) -> Any: ...
    @property
    def dispersions_(self) -> pd.DataFrame | None: ...
    def get_latent_representation(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass
class GLMState:
    """Data and point estimates of the per-gene GLMs at the latent posterior (float64 tensors)."""

    indices: np.ndarray
    counts: torch.Tensor | None  # (n, G), when asked for
    size_factors: torch.Tensor  # (n,)
    z_mean: torch.Tensor  # (n, k)
    z_var: torch.Tensor  # (n, k)
    cov_features: torch.Tensor  # (n, f)
    beta: torch.Tensor  # (G, p): intercept, loadings, covariate coefficients
    design: torch.Tensor  # (n, p) at the latent means
    moments: torch.Tensor  # (n, p, p) = E_q[x x^T]
    prior_precision: torch.Tensor | None = None  # (p, p) of the weight prior; None: the model's
    log_disp: torch.Tensor | None = None  # (G,) log dispersions; None: the model's
    log_disp_var: torch.Tensor | None = None  # (G,) their posterior variances; None: the model's
    log_disp_nodes: torch.Tensor | None = None  # (G, J) their posteriors' nodes (sds from log_disp); None: the model's

    def mu(self, genes: slice = slice(None)) -> torch.Tensor:
        """Fitted NB means ``s_i exp(x_i beta_g)`` at the latent means, ``(n, genes)``."""
        return self.size_factors[:, None] * torch.exp(self.design @ self.beta[genes].T)


def registered_covariates(mgr, n_cats_per_cov: list[int], n_continuous_cov: int) -> torch.Tensor:
    """Covariate features ``(n, f)`` (float32, CPU) of the samples registered in the AnnData manager ``mgr``."""
    cat = cont = None
    if REGISTRY_KEYS.CAT_COVS_KEY in mgr.data_registry:
        cat = torch.as_tensor(np.asarray(mgr.get_from_registry(REGISTRY_KEYS.CAT_COVS_KEY), dtype=np.int64))
    if REGISTRY_KEYS.CONT_COVS_KEY in mgr.data_registry:
        cont = torch.as_tensor(np.asarray(mgr.get_from_registry(REGISTRY_KEYS.CONT_COVS_KEY), dtype=np.float32))
    feats = covariate_design(cat, cont, n_cats_per_cov, n_continuous_cov)
    return torch.zeros(mgr.adata.n_obs, 0) if feats is None else feats


def covariate_features(model: FittedNBVAE, indices: np.ndarray | None = None) -> torch.Tensor:
    """The decoder's covariate features of the model's samples ``(n, f)`` (float32, on the model's device)."""
    m = model.module
    feats = registered_covariates(model.adata_manager, m.n_cats_per_cov, m.n_continuous_cov)
    if indices is not None:
        feats = feats[torch.as_tensor(indices)]
    return feats.to(model.device)


def glm_state(
    model: FittedNBVAE,
    *,
    indices: np.ndarray | None = None,
    max_samples: int | None = None,
    random_state: int = 0,
    with_counts: bool = True,
) -> GLMState:
    """Collect (counts,) size factors, latent posteriors and design features of (a subset of) samples."""
    n = model.adata.n_obs
    if indices is None:
        indices = np.arange(n)
        if max_samples is not None and n > max_samples:
            indices = np.sort(np.random.default_rng(random_state).choice(n, max_samples, replace=False))
    indices = np.asarray(indices)
    dev = model.device
    mgr = model.adata_manager
    counts = to_dense(mgr.get_from_registry(REGISTRY_KEYS.X_KEY)[indices], dtype=np.float64) if with_counts else None
    sf = np.asarray(mgr.get_from_registry(REGISTRY_KEYS.SIZE_FACTOR_KEY), dtype=np.float64).ravel()[indices]
    zm, zv = model.get_latent_representation(indices=indices, return_dist=True)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=DTYPE, device=dev)  # noqa: E731
    z_mean, z_var = t(zm), t(zv)
    feats = covariate_features(model, indices).to(DTYPE)
    m = model.module
    beta = torch.cat([m.intercept.detach()[:, None], m.loadings.detach(), m.cov_coef.detach()], dim=1).to(DTYPE)
    design = torch.cat([torch.ones(len(indices), 1, dtype=DTYPE, device=dev), z_mean, feats], dim=1)
    moments = design[:, :, None] * design[:, None, :]
    k = z_mean.shape[1]
    moments[:, 1 : 1 + k, 1 : 1 + k] += torch.diag_embed(z_var)
    counts_t = None if counts is None else t(counts)
    lam = _prior_precision(model, beta.shape[1])
    return GLMState(indices, counts_t, t(sf), z_mean, z_var, feats, beta, design, moments, lam)


def _prior_precision(model: FittedNBVAE, p: int) -> torch.Tensor:
    # the module's own prior: flat intercept, weight_prior_sd on the loadings, the weak cov_prior_sd on the design
    prec = model.module.prior_precision_diag().to(device=model.device, dtype=DTYPE)
    assert prec.shape == (p,)
    return torch.diag(prec)


def lfc_draws(
    model: FittedNBVAE,
    state: GLMState,
    group1: np.ndarray,
    group2: np.ndarray,
    *,
    counterfactual: tuple[torch.Tensor, torch.Tensor] | None = None,
    n_draws: int = 400,
    include: tuple[str, ...] = ("z", "decoder", "dispersion"),
    random_state: int = 0,
    max_elements: int = 25_000_000,
) -> np.ndarray:
    """Posterior draws of the log2 fold change ``group1 / group2`` for every gene, shape ``(n_draws, G)``.

    ``group1``/``group2`` are positions into ``state``'s samples. With ``counterfactual = (f1, f2)`` (covariate
    features of every sample of the model, ``(n, f)`` each, from :func:`counterfactual_features`), every sample
    of ``group1`` is decoded twice, with ``f1`` and with ``f2``, keeping its latent code (``group2`` is unused).
    ``include`` selects the sources of uncertainty (for calibration studies); with ``"samples"`` each draw
    weights the samples of each group by a Bayesian bootstrap (flat Dirichlet weights, the same for both
    decodings of a counterfactual), so the draws cover the group means of the population the samples come
    from rather than of these samples only. The small ``p x p`` information
    matrices are factorised in float64, one batched Cholesky per dispersion node; the draws themselves (normal
    deviates, linear predictors, log-sum-exp over samples) are float32, whose rounding (1e-7 relative) is far
    below the posterior sds. A counterfactual that changes the features of every sample by the same amount
    (a categorical factor set to each level) shifts every linear predictor of a draw by the same amount, so
    its log fold change is exactly that contrast of the drawn coefficients (the codes and sample weights
    cancel); it is drawn directly, one normal per draw and gene. Genes are processed in chunks of at most
    ``max_elements / (n_draws x samples)`` genes, which bounds the memory for any number of samples.
    """
    gen = torch.Generator(device="cpu").manual_seed(int(random_state))
    dev = state.beta.device
    f32 = torch.float32
    g_total, p = state.beta.shape
    k = state.z_mean.shape[1]
    lam = _prior_precision(model, p) if state.prior_precision is None else state.prior_precision
    log_disp, var_disp, node_z = state.log_disp, state.log_disp_var, state.log_disp_nodes
    if log_disp is None:
        assert model.dispersions_ is not None  # set by training, with the decoder's dispersions
        log_disp = model.module.log_disp.detach().to(DTYPE)
        var_disp = torch.as_tensor(model.dispersions_["log_dispersion_var"].to_numpy(), dtype=DTYPE, device=dev)
        node_z = model_dispersion_nodes(model)
    if node_z is None:
        node_z = torch.as_tensor(_dispersion.normal_nodes(), dtype=DTYPE, device=dev).expand(g_total, -1)
    if "dispersion" in include:
        kept, counts_per_node = node_allocation(n_draws)
        nodes = node_z.to(device=dev, dtype=DTYPE)[:, torch.as_tensor(kept)]
    else:
        nodes, counts_per_node = torch.zeros(g_total, 1, dtype=DTYPE, device=dev), [n_draws]

    sel = np.asarray(group1) if counterfactual is not None else np.concatenate([group1, group2])
    n1 = len(group1)
    if "z" in include:  # one draw for every sample of the state, then select: independent of group order
        eps = torch.randn(n_draws, state.z_mean.shape[0], k, generator=gen, dtype=f32).to(dev)
        z = (state.z_mean.to(f32) + eps * state.z_var.sqrt().to(f32))[:, torch.as_tensor(sel)]
    else:
        z = state.z_mean[sel].to(f32).expand(n_draws, -1, -1)
    ones = torch.ones(n_draws, len(sel), 1, dtype=f32, device=dev)
    if counterfactual is None:
        x = torch.cat([ones, z, state.cov_features[sel].to(f32).expand(n_draws, -1, -1)], dim=2)
        x1, x2 = x[:, :n1], x[:, n1:]
    else:
        f1, f2 = (f[torch.as_tensor(sel)].to(f32).to(dev).expand(n_draws, -1, -1) for f in counterfactual)
        x1 = torch.cat([ones, z, f1], dim=2)
        x2 = torch.cat([ones, z, f2], dim=2)
    if "samples" in include:  # log Dirichlet(1, ..., 1) weights per draw and group (normalised exponentials)
        # one weight per sample of the state, then select: independent of the order of the groups
        expo = -torch.log(torch.rand(n_draws, state.z_mean.shape[0], generator=gen, dtype=f32).clamp_min(1e-30))
        expo = expo.to(dev)[:, torch.as_tensor(sel)]
        if counterfactual is None:
            e1, e2 = expo[:, :n1], expo[:, n1:]
        else:
            e1 = e2 = expo
        lw1 = (torch.log(e1) - torch.log(e1.sum(1, keepdim=True)))[:, :, None]
        lw2 = (torch.log(e2) - torch.log(e2.sum(1, keepdim=True)))[:, :, None]
    else:
        lw1 = torch.full((1, x1.shape[1], 1), -float(np.log(x1.shape[1])), dtype=f32, device=dev)
        lw2 = torch.full((1, x2.shape[1], 1), -float(np.log(x2.shape[1])), dtype=f32, device=dev)

    # a counterfactual that changes every sample's features by the same amount changes every linear predictor
    # of a draw by the same amount: the log2 fold change is that contrast of the drawn coefficients, exactly
    # (the latent codes and the sample weights cancel), so the linear predictors are never formed
    contrast_vector = None
    if counterfactual is not None:
        shift = (counterfactual[0] - counterfactual[1])[torch.as_tensor(sel)].to(f32).to(dev)
        if bool((shift == shift[:1]).all()):
            contrast_vector = torch.cat([torch.zeros(1 + k, dtype=f32, device=dev), shift[0]])
    out = np.empty((n_draws, g_total), dtype=np.float32)
    gene_chunk = max(1, min(g_total, max_elements // (n_draws * (x1.shape[1] + x2.shape[1]))))
    cache_genes = max(1, 1_000_000 // (n_draws * max(x1.shape[1], x2.shape[1])))
    for a in range(0, g_total, gene_chunk):
        s = slice(a, min(a + gene_chunk, g_total))
        beta_hat = state.beta[s].to(f32)
        g = beta_hat.shape[0]
        if contrast_vector is None:
            beta = beta_hat.expand(n_draws, -1, -1).clone()
        else:  # only the contrast c . beta of each draw: c . L^-T eps = (L^-1 c) . eps, normal with sd |L^-1 c|
            lfc = (beta_hat @ contrast_vector).expand(n_draws, -1).clone()
        if "decoder" in include:
            assert var_disp is not None  # a state with its own log dispersions carries their variances
            mu = state.mu(s)
            # the contrast of a draw needs one standard normal per draw and gene (c . L^-T eps ~ N(0, |L^-1 c|^2))
            shape = (n_draws, g) if contrast_vector is not None else (n_draws, g, p)
            eps = torch.randn(*shape, generator=gen, dtype=f32).to(dev)
            start = 0
            for j, m in enumerate(counts_per_node):
                alpha = torch.exp(log_disp[s] + nodes[s, j] * var_disp[s].sqrt())
                w = mu / (1.0 + alpha * mu)
                info = torch.einsum("ng,npq->gpq", w, state.moments) + lam
                chol = torch.linalg.cholesky(info).to(f32)  # info = L L^T, so L^-T eps has covariance info^-1
                if contrast_vector is not None:
                    v = torch.linalg.solve_triangular(chol, contrast_vector.expand(g, p)[:, :, None], upper=False)
                    lfc[start : start + m] += eps[start : start + m] * torch.linalg.vector_norm(v[..., 0], dim=1)
                else:
                    beta[start : start + m] += _solve_upper_t(chol, eps[start : start + m])
                start += m
        if contrast_vector is None:  # in blocks of genes whose temporaries stay in the cache (2x faster)
            lfc = torch.empty(n_draws, g, dtype=f32, device=dev)
            for b in range(0, g, cache_genes):
                bs = slice(b, min(b + cache_genes, g))
                lfc[:, bs] = _log_weighted_sum_exp(x1, beta[:, bs], lw1) - _log_weighted_sum_exp(x2, beta[:, bs], lw2)
        out[:, s] = (lfc / np.log(2.0)).cpu().numpy()
    return out


def _solve_upper_t(chol: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``L_g^-T eps_sg`` for lower-triangular ``chol`` ``(g, p, p)`` and ``eps`` ``(s, g, p)``, shape ``(s, g, p)``.

    Back substitution vectorised over draws and genes on contiguous ``(s, g)`` planes: a few ops per pair of
    coefficients instead of one tiny batched triangular solve per gene (the same arithmetic up to rounding).
    """
    p = chol.shape[-1]
    e = eps.permute(2, 0, 1).contiguous()  # (p, s, g)
    low = chol.permute(1, 2, 0).contiguous()  # (p, p, g): low[j, i] = L[g, j, i]
    out = torch.empty_like(e)
    for i in reversed(range(p)):
        acc = e[i]
        for j in range(i + 1, p):
            acc = acc - low[j, i] * out[j]
        out[i] = acc / low[i, i]
    return out.permute(1, 2, 0)


#: Probabilities of the bins of a log dispersion's posterior whose conditional means are the dispersion nodes.
NODE_BINS = _dispersion.NODE_BINS


def node_allocation(n_draws: int) -> tuple[np.ndarray, list[int]]:
    """The bins of :data:`NODE_BINS` that get draws and the number of draws at each.

    Each bin gets a share of the ``n_draws`` equal to its probability (largest remainders), so the draws are
    equally weighted and their mixture over the nodes has the posterior's spread and its tails: with
    equal-probability nodes the high-dispersion tail, where the interval of a log fold change is widest,
    would be left out. Bins without a draw are dropped.
    """
    probs = np.asarray(NODE_BINS, dtype=np.float64)
    raw = probs * n_draws
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n_draws - counts.sum()]] += 1
    keep = np.flatnonzero(counts > 0)
    return keep, counts[keep].tolist()


def dispersion_nodes(n_draws: int) -> tuple[np.ndarray, list[int]]:
    """Standardised nodes of a normal posterior of a log dispersion and the number of draws at each.

    Node ``j`` is the mean of a standard normal within the ``j``-th bin of :data:`NODE_BINS` (scaled so that the
    nodes' variance is 1); the draws are allocated by :func:`node_allocation`. The model's own nodes are those
    of each gene's posterior computed on a grid (:func:`~gendex.model._dispersion.posterior_nodes`), which is
    skewed and may have two modes; these are its normal approximation's.
    """
    keep, counts = node_allocation(n_draws)
    return _dispersion.normal_nodes()[keep], counts


def model_dispersion_nodes(model: FittedNBVAE) -> torch.Tensor | None:
    """The nodes ``(G, J)`` of the model's posteriors of the log dispersions (sds from them), or None."""
    table = model.dispersions_
    if table is None or not set(_dispersion.NODE_COLUMNS) <= set(table.columns):
        return None
    values = table[list(_dispersion.NODE_COLUMNS)].to_numpy(dtype=np.float64)
    return torch.as_tensor(values, dtype=DTYPE, device=model.device)


def _log_weighted_sum_exp(x: torch.Tensor, beta: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
    """``log sum_i w_i exp(x_i . beta)`` per draw and gene, ``(s, g)``, for ``x`` ``(s, n, p)`` with ``x[..., 0] = 1``.

    The log-sum-exp over samples in three passes instead of six: every gene's exponentials are shifted by one
    constant (its largest linear predictor in the first draw, folded into the intercept), summed with the weights
    by one batched product, and the rare (draw, gene) whose sum leaves ``[1e-30, 1e30]`` (a draw far from the
    others, where float32 exponentials would lose precision) is recomputed by ``torch.logsumexp``.
    """
    shift = torch.einsum("np,gp->ng", x[0], beta[0]).amax(0)  # (g,)
    shifted = beta.clone()
    shifted[..., 0] -= shift
    expo = torch.exp_(torch.einsum("snp,sgp->sng", x, shifted))
    weights = torch.exp(log_w).expand(x.shape[0], -1, -1).transpose(1, 2)  # (s, 1, n)
    total = torch.bmm(weights, expo)[:, 0]
    out = torch.log(total) + shift
    bad = ~((total > 1e-30) & (total < 1e30))
    if bool(bad.any()):
        cols = bad.any(0).nonzero()[:, 0]
        eta = torch.einsum("snp,sgp->sng", x, beta[:, cols])
        out[:, cols] = torch.logsumexp(eta + log_w, 1)
    return out


def mean_decoded(state: GLMState, chunk: int = 1024) -> np.ndarray:
    """Mean over the state's samples of the decoded normalised means at the latent posterior means, ``(G,)``."""
    g = state.beta.shape[0]
    parts = [torch.exp(state.design @ state.beta[a : a + chunk].T).mean(0) for a in range(0, g, chunk)]
    return torch.cat(parts).cpu().numpy()


def counterfactual_features(model: FittedNBVAE, key: str, level1: str, level2: str):
    """Covariate features of every sample with categorical covariate ``key`` set to each level, or None.

    None when ``key`` is not a categorical covariate of the model. Raises when a level is unknown to the model.
    """
    mgr = model.adata_manager
    if REGISTRY_KEYS.CAT_COVS_KEY not in mgr.data_registry:
        return None
    state = mgr.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY)
    keys = list(state.field_keys)
    if key not in keys:
        return None
    j = keys.index(key)
    mapping = [str(c) for c in state.mappings[key]]
    for level in (level1, level2):
        if level not in mapping:
            raise ValueError(f"level {level!r} of covariate {key!r} is unknown to the model; levels: {mapping}")
    cat = torch.as_tensor(np.asarray(mgr.get_from_registry(REGISTRY_KEYS.CAT_COVS_KEY), dtype=np.int64))
    cont = None
    if REGISTRY_KEYS.CONT_COVS_KEY in mgr.data_registry:
        cont = torch.as_tensor(np.asarray(mgr.get_from_registry(REGISTRY_KEYS.CONT_COVS_KEY), dtype=np.float32))
    out = []
    for level in (level1, level2):
        c = cat.clone()
        c[:, j] = mapping.index(level)
        out.append(covariate_design(c, cont, model.module.n_cats_per_cov, model.module.n_continuous_cov))
    return tuple(out)


def with_group_feature(
    model: FittedNBVAE,
    state: GLMState,
    group1: np.ndarray,
    group2: np.ndarray,
    *,
    n_iter: int = 10,
    max_elements: int = 20_000_000,
) -> GLMState:
    """``state`` with the group coding as one more decoder feature, every gene's GLM refitted with it.

    The feature ``c_i`` is ``+1/2`` in ``group1``, ``-1/2`` in ``group2`` and 0 elsewhere; its coefficient
    ``gamma_g`` is the part of gene ``g``'s group difference that the latent codes and covariates do not
    explain. Each gene's penalised NB GLM on ``[1, z, covariates, c]`` (latent means, MAP dispersion, the
    weight prior on the loadings and covariates, a flat prior on ``gamma``, Firth's score so that genes with
    separated counts stay finite) is refitted by Newton steps from the decoder's coefficients and ``gamma = 0``
    (steps clipped to one unit per coefficient); the dispersions are then estimated again on these fits
    (DESeq2's procedure, as in training: a group difference the decoder misses would otherwise count as
    dispersion) and the GLMs refitted at them. The returned
    state's Laplace posterior (:func:`lfc_draws`) then covers the joint uncertainty of the decoder and the
    group coefficient: when the latent space carries the groups the two are confounded and share the group
    difference, and when it does not, ``gamma`` carries it.
    """
    if state.counts is None:
        raise ValueError("with_group_feature needs a GLM state with counts")
    dev = state.beta.device
    n, (g_total, p) = state.design.shape[0], state.beta.shape
    c = torch.zeros(n, dtype=DTYPE, device=dev)
    c[torch.as_tensor(np.asarray(group1))] = 0.5
    c[torch.as_tensor(np.asarray(group2))] = -0.5
    design = torch.cat([state.design, c[:, None]], dim=1)
    moments = design[:, :, None] * design[:, None, :]
    moments[:, :p, :p] = state.moments
    lam = torch.zeros(p + 1, p + 1, dtype=DTYPE, device=dev)
    lam[:p, :p] = state.prior_precision if state.prior_precision is not None else _prior_precision(model, p)
    lam[p, p] = 1e-8
    beta = torch.cat([state.beta, torch.zeros(g_total, 1, dtype=DTYPE, device=dev)], dim=1)
    log_disp = model.module.log_disp.detach().to(DTYPE)
    base_mean = (state.counts / state.size_factors[:, None]).mean(0).cpu().numpy()
    kw: dict[str, Any] = {"n_iter": n_iter, "max_elements": max_elements, "firth": True}
    # DESeq2's order: the fits at the decoder's dispersions, the dispersions on them, the fits at those
    beta = fit_nb_glm(state.counts, state.size_factors, design, log_disp, beta, lam, **kw)
    mu = state.size_factors[:, None] * torch.exp((design @ beta.T).clamp(max=60.0))
    heavy = bool((getattr(model, "dispersion_trend_", None) or {}).get("heavy_tail", True))
    fit = _dispersion.fit_dispersions(state.counts, mu, moments, base_mean, heavy_tail=heavy)
    log_disp = torch.as_tensor(fit.log_final, dtype=DTYPE, device=dev)
    beta = fit_nb_glm(state.counts, state.size_factors, design, log_disp, beta, lam, **kw)
    var = torch.as_tensor(fit.log_final_var * len(state.indices) / model.adata.n_obs, dtype=DTYPE, device=dev)
    feats = torch.cat([state.cov_features, c[:, None]], dim=1)
    return GLMState(
        state.indices,
        state.counts,
        state.size_factors,
        state.z_mean,
        state.z_var,
        feats,
        beta,
        design,
        moments,
        lam,
        log_disp,
        var,
        torch.as_tensor(fit.nodes(), dtype=DTYPE, device=dev),
    )


def firth_refit(model: FittedNBVAE, state: GLMState, *, n_iter: int = 25, max_elements: int = 20_000_000):
    """The decoder's coefficients ``[b, W, B]`` with ``b`` and ``B`` Firth-penalised MAPs given the codes, ``(G, p)``.

    Each gene's GLM on ``[1, covariates]`` with the latent part ``W z`` (latent means, trained loadings) as an
    offset, at the model's dispersions and under its weak ``cov_prior_sd`` prior, with Firth's score (see
    :func:`gendex.model._init.fit_nb_glm`), by Newton steps from the trained coefficients. The covariate
    coefficients carry only that weak prior, so where a gene has no counts in a whole cell of the design (e.g.
    every sample of one condition, or all but one of a paired design) the likelihood keeps rising towards an
    infinite coefficient and training leaves it wherever it stopped (log2 fold changes of +-7 for a single count
    of 10); with the Jeffreys penalty it is finite, and the Laplace posterior is taken there. The loadings keep
    their trained values: they carry a proper prior, and their fit integrates over the codes' uncertainty,
    which a fit at the latent means would not.
    """
    if state.counts is None:
        raise ValueError("firth_refit needs a GLM state with counts")
    p, k = state.beta.shape[1], state.z_mean.shape[1]
    lam = state.prior_precision if state.prior_precision is not None else _prior_precision(model, p)
    keep = torch.as_tensor([0, *range(1 + k, p)], device=state.beta.device)
    fitted = fit_nb_glm(
        state.counts,
        state.size_factors,
        state.design[:, keep],
        model.module.log_disp.detach().to(DTYPE),
        state.beta[:, keep],
        lam[keep][:, keep],
        n_iter,
        firth=True,
        offset=state.z_mean @ state.beta[:, 1 : 1 + k].T,
        max_elements=max_elements,
    )
    beta = state.beta.clone()
    beta[:, keep] = fitted
    return beta


def group_coefficient_se(model: FittedNBVAE, state: GLMState, chunk: int = 4096) -> np.ndarray:
    """Laplace posterior sd of the last coefficient of every gene's GLM (at the state's dispersions), ``(G,)``."""
    log_disp = model.module.log_disp.detach().to(DTYPE) if state.log_disp is None else state.log_disp
    alpha_all = torch.exp(log_disp)
    lam = state.prior_precision
    assert lam is not None  # states from with_group_feature carry their prior precision
    g_total = state.beta.shape[0]
    out = np.empty(g_total)
    for a in range(0, g_total, chunk):
        s = slice(a, min(a + chunk, g_total))
        mu = state.mu(s)
        w = mu / (1.0 + alpha_all[s] * mu)
        info = torch.einsum("ng,npq->gpq", w, state.moments) + lam
        out[s] = torch.linalg.inv(info)[:, -1, -1].clamp_min(0.0).sqrt().cpu().numpy()
    return out


def group_difference(state: GLMState, group1: np.ndarray, group2: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """log2 ratio of the two groups' mean fitted normalised expression at the latent means, ``(G,)``."""
    g_total = state.beta.shape[0]
    d1, d2 = state.design[torch.as_tensor(group1)], state.design[torch.as_tensor(group2)]
    parts = []
    for a in range(0, g_total, chunk):
        b = state.beta[a : a + chunk].T
        mean1 = torch.logsumexp(d1 @ b, 0) - np.log(len(group1))
        parts.append(mean1 - torch.logsumexp(d2 @ b, 0) + np.log(len(group2)))
    return (torch.cat(parts) / np.log(2.0)).cpu().numpy()


def latent_separation(z_mean: np.ndarray, group1: np.ndarray, group2: np.ndarray) -> dict[str, float]:
    """How well the latent means separate two groups of samples (each of at least 2 samples).

    ``silhouette``: the mean silhouette width of the two groups (Euclidean; 1 = tight, distinct groups,
    about 0 = no separation); ``cv_accuracy``: the balanced leave-one-out accuracy of a nearest-centroid
    classifier (0.5 = chance); ``pvalue``: Hotelling's two-sample T^2 test of equal latent means (pooled
    covariance; NaN when there are too few samples for the latent dimension).
    """
    zm = np.asarray(z_mean, dtype=np.float64)
    z1, z2 = zm[group1], zm[group2]
    z = np.concatenate([z1, z2])
    lab = np.r_[np.zeros(len(z1), bool), np.ones(len(z2), bool)]
    dist = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    n_same = np.where(lab, len(z2), len(z1)) - 1
    same = np.where(lab[None, :] == lab[:, None], dist, 0.0).sum(1) / n_same
    other = np.where(lab[None, :] != lab[:, None], dist, 0.0).sum(1) / np.where(lab, len(z1), len(z2))
    top = np.maximum(same, other)
    width = np.where(top > 0, (other - same) / np.where(top > 0, top, 1.0), 0.0)
    # leave-one-out nearest centroid: a sample's own group centroid is computed without it
    c1, c2 = z1.mean(0), z2.mean(0)
    correct = np.empty(len(z), bool)
    for i in range(len(z)):
        own = (c2 * len(z2) - z[i]) / (len(z2) - 1) if lab[i] else (c1 * len(z1) - z[i]) / (len(z1) - 1)
        oth = c1 if lab[i] else c2
        correct[i] = np.sum((z[i] - own) ** 2) < np.sum((z[i] - oth) ** 2)
    acc = 0.5 * (correct[~lab].mean() + correct[lab].mean())
    return {"silhouette": float(width.mean()), "cv_accuracy": float(acc), "pvalue": _hotelling(z1, z2)}


def _hotelling(z1: np.ndarray, z2: np.ndarray) -> float:
    from scipy.stats import f as f_dist

    n1, n2, k = len(z1), len(z2), z1.shape[1]
    df2 = n1 + n2 - k - 1
    if df2 < 1 or k == 0:  # no latent space (the conditional mode may choose none)
        return float("nan")
    pooled = ((n1 - 1) * np.cov(z1.T, ddof=1).reshape(k, k) + (n2 - 1) * np.cov(z2.T, ddof=1).reshape(k, k)) / (
        n1 + n2 - 2
    )
    diff = z1.mean(0) - z2.mean(0)
    t2 = n1 * n2 / (n1 + n2) * float(diff @ np.linalg.pinv(pooled) @ diff)
    return float(f_dist.sf(t2 * df2 / (k * (n1 + n2 - 2)), k, df2))


def at_common_centroid(state: GLMState, group1: np.ndarray, group2: np.ndarray) -> GLMState:
    """``state`` with the latent means of both groups' samples set to their common centroid.

    Decoding from it compares the groups at one latent point, so the log fold change is the group
    coefficient of :func:`with_group_feature` alone: for when the groups' latent difference is chance (the
    latent space does not separate them), which then is not part of the group effect. The decoder's Laplace
    information is unchanged.
    """
    z = state.z_mean.clone()
    sel = torch.as_tensor(np.concatenate([group1, group2]))
    z[sel] = z[sel].mean(0)
    return replace(state, z_mean=z)
