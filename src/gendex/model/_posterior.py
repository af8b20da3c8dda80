"""Posterior draws of the NB-VAE's per-gene parameters and of group log fold changes (torch; no AnnData writes).

Given the latent posterior ``q(z_i) = N(m_i, diag v_i)``, the decoder of gene ``g`` is a negative-binomial GLM
on the features ``x_i = [1, z_i, c_i]``. Its parameters ``beta_g = (b_g, W_g, B_g)`` get a Laplace posterior:
``N(beta_hat_g, H_g(alpha)^-1)`` with ``H_g(alpha) = sum_i w_ig E_q[x_i x_i^T] + Lambda``, NB weights
``w = mu / (1 + alpha mu)`` (the GLM information averaged over ``q(z)``, as the ELBO averages the likelihood) and
the weight prior's precision ``Lambda``. The dispersion's own uncertainty enters by drawing ``log alpha_g`` from
its posterior (normal, variance from :func:`~gendex.model._dispersion.fit_dispersions`) at equal-probability
nodes, each with its own ``H_g(alpha)``. Latent codes are drawn from ``q(z)``. A draw of the log fold change
between two groups of samples is ``log2 mean_{i in 1} exp(x_i beta) - log2 mean_{i in 2} exp(x_i beta)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.stats import norm
from scvi import REGISTRY_KEYS

from .._validation import to_dense
from ._module import covariate_design

if TYPE_CHECKING:
    from ._model import NBVAE

DTYPE = torch.float64


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


def covariate_features(model: NBVAE, indices: np.ndarray | None = None) -> torch.Tensor:
    """The decoder's covariate features of the model's samples ``(n, f)`` (float32, on the model's device)."""
    m = model.module
    feats = registered_covariates(model.adata_manager, m.n_cats_per_cov, m.n_continuous_cov)
    if indices is not None:
        feats = feats[torch.as_tensor(indices)]
    return feats.to(model.device)


def glm_state(
    model: NBVAE,
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
    return GLMState(indices, None if counts is None else t(counts), t(sf), z_mean, z_var, feats, beta, design, moments)


def _prior_precision(model: NBVAE, p: int) -> torch.Tensor:
    # the module's own prior: flat intercept, weight_prior_sd on the loadings, the weak cov_prior_sd on the design
    prec = model.module.prior_precision_diag().to(device=model.device, dtype=DTYPE)
    assert prec.shape == (p,)
    return torch.diag(prec)


def lfc_draws(
    model: NBVAE,
    state: GLMState,
    group1: np.ndarray,
    group2: np.ndarray,
    *,
    counterfactual: tuple[torch.Tensor, torch.Tensor] | None = None,
    n_draws: int = 400,
    n_nodes: int = 4,
    include: tuple[str, ...] = ("z", "decoder", "dispersion"),
    random_state: int = 0,
    max_elements: int = 25_000_000,
) -> np.ndarray:
    """Posterior draws of the log2 fold change ``group1 / group2`` for every gene, shape ``(n_draws, G)``.

    ``group1``/``group2`` are positions into ``state``'s samples. With ``counterfactual = (f1, f2)`` (covariate
    features of every sample of the model, ``(n, f)`` each, from :func:`counterfactual_features`), every sample
    of ``group1`` is decoded twice, with ``f1`` and with ``f2``, keeping its latent code (``group2`` is unused).
    ``include`` selects the sources of uncertainty (for calibration studies). The small ``p x p`` information
    matrices are factorised in float64, one batched Cholesky per dispersion node; the draws themselves (normal
    deviates, linear predictors, log-sum-exp over samples) are float32, whose rounding (1e-7 relative) is far
    below the posterior sds. Genes are processed in chunks of at most ``max_elements / (n_draws x samples)``
    genes, which bounds the memory for any number of samples.
    """
    gen = torch.Generator(device="cpu").manual_seed(int(random_state))
    dev = state.beta.device
    f32 = torch.float32
    g_total, p = state.beta.shape
    k = state.z_mean.shape[1]
    lam = _prior_precision(model, p)
    log_disp = model.module.log_disp.detach().to(DTYPE)
    var_disp = torch.as_tensor(model.dispersions_["log_dispersion_var"].to_numpy(), dtype=DTYPE, device=dev)
    nodes = torch.as_tensor(norm.ppf((np.arange(n_nodes) + 0.5) / n_nodes), dtype=DTYPE, device=dev)
    if "dispersion" not in include:
        nodes = torch.zeros(1, dtype=DTYPE, device=dev)
    node_of_draw = torch.arange(n_draws) % len(nodes)
    draw_order = torch.argsort(node_of_draw, stable=True)  # draws grouped by node: contiguous slices
    counts_per_node = torch.bincount(node_of_draw, minlength=len(nodes)).tolist()

    sel = np.asarray(group1) if counterfactual is not None else np.concatenate([group1, group2])
    n1 = len(group1)
    if "z" in include:  # one draw for every sample of the state, then select: independent of group order
        eps = torch.randn(n_draws, state.z_mean.shape[0], k, generator=gen, dtype=f32).to(dev)
        z = (state.z_mean.to(f32) + eps * state.z_var.sqrt().to(f32))[:, torch.as_tensor(sel)]
    else:
        z = state.z_mean[sel].to(f32).expand(n_draws, -1, -1)
    z = z[draw_order.to(dev)]
    ones = torch.ones(n_draws, len(sel), 1, dtype=f32, device=dev)
    if counterfactual is None:
        x = torch.cat([ones, z, state.cov_features[sel].to(f32).expand(n_draws, -1, -1)], dim=2)
        x1, x2 = x[:, :n1], x[:, n1:]
    else:
        f1, f2 = (f[torch.as_tensor(sel)].to(f32).to(dev).expand(n_draws, -1, -1) for f in counterfactual)
        x1 = torch.cat([ones, z, f1], dim=2)
        x2 = torch.cat([ones, z, f2], dim=2)
    log_n1, log_n2 = np.log(x1.shape[1]), np.log(x2.shape[1])

    out = np.empty((n_draws, g_total), dtype=np.float32)
    gene_chunk = max(1, min(g_total, max_elements // (n_draws * (x1.shape[1] + x2.shape[1]))))
    for a in range(0, g_total, gene_chunk):
        s = slice(a, min(a + gene_chunk, g_total))
        beta_hat = state.beta[s].to(f32)
        g = beta_hat.shape[0]
        beta = beta_hat.expand(n_draws, -1, -1).clone()
        if "decoder" in include:
            mu = state.mu(s)
            eps = torch.randn(n_draws, g, p, generator=gen, dtype=f32).to(dev)
            start = 0
            for j, t in enumerate(nodes):
                m = counts_per_node[j]
                alpha = torch.exp(log_disp[s] + t * var_disp[s].sqrt())
                w = mu / (1.0 + alpha * mu)
                info = torch.einsum("ng,npq->gpq", w, state.moments) + lam
                chol = torch.linalg.cholesky(info).to(f32)  # info = L L^T, so L^-T eps has covariance info^-1
                e = eps[start : start + m].permute(1, 2, 0)  # (g, p, m)
                delta = torch.linalg.solve_triangular(chol.transpose(1, 2), e, upper=True)
                beta[start : start + m] += delta.permute(2, 0, 1)
                start += m
        eta1 = torch.einsum("snp,sgp->sng", x1, beta)
        eta2 = torch.einsum("snp,sgp->sng", x2, beta)
        lfc = (torch.logsumexp(eta1, 1) - log_n1) - (torch.logsumexp(eta2, 1) - log_n2)
        out[:, s] = (lfc / np.log(2.0)).cpu().numpy()
    return out


def mean_decoded(state: GLMState, chunk: int = 1024) -> np.ndarray:
    """Mean over the state's samples of the decoded normalised means at the latent posterior means, ``(G,)``."""
    g = state.beta.shape[0]
    parts = [torch.exp(state.design @ state.beta[a : a + chunk].T).mean(0) for a in range(0, g, chunk)]
    return torch.cat(parts).cpu().numpy()


def counterfactual_features(model: NBVAE, key: str, level1: str, level2: str):
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


@dataclass
class ResidualEffect:
    """Per gene, the group difference the decoder does not reproduce (natural log, ``(G,)`` arrays)."""

    estimate: np.ndarray  # gamma_hat: NB fit of the group coding on the decoded means as offsets
    se: np.ndarray  # 1 / sqrt(efficient information): the decoder's own parameters profiled out


def residual_effect(
    model: NBVAE,
    state: GLMState,
    group1: np.ndarray,
    group2: np.ndarray,
    *,
    n_iter: int = 25,
    max_abs: float = 15.0,
    max_elements: int = 20_000_000,
) -> ResidualEffect:
    """NB fit of ``log mu_ig = log mu0_ig + gamma_g c_i`` with the decoded means ``mu0`` as offsets.

    ``c_i`` is ``+1/2`` in ``group1``, ``-1/2`` in ``group2`` and 0 elsewhere, so ``gamma_g`` is the part of
    the log fold change ``group1 / group2`` that the decoded means at the latent posterior means miss. Newton
    steps on ``gamma`` (clipped to one unit per step and to ``|gamma| <= max_abs``); its standard error comes
    from the efficient information, ``c'Wc - c'WX (X'WX + Lambda)^-1 X'Wc``, which removes what the decoder's
    own features ``X = [1, z, covariates]`` (with the latent second moments of ``q(z)``) can explain: when the
    latent space carries the groups, ``gamma`` is not identifiable and its standard error is large. The
    dispersion is the larger of the MAP and the gene-wise estimate, which keeps genes far above the trend from
    looking certain.
    """
    dev = state.beta.device
    n, g_total = state.design.shape[0], state.beta.shape[0]
    if state.counts is None:
        raise ValueError("residual_effect needs a GLM state with counts")
    c = torch.zeros(n, dtype=DTYPE, device=dev)
    c[torch.as_tensor(np.asarray(group1))] = 0.5
    c[torch.as_tensor(np.asarray(group2))] = -0.5
    disp = model.dispersions_
    log_alpha = np.log(np.maximum(disp["dispersion"].to_numpy(), np.nan_to_num(disp["genewise"].to_numpy(), nan=0.0)))
    log_alpha = torch.as_tensor(np.nan_to_num(log_alpha, nan=np.log(1e-8)), dtype=DTYPE, device=dev)
    lam = _prior_precision(model, state.beta.shape[1])
    est = np.empty(g_total)
    se = np.empty(g_total)
    chunk = max(1, min(g_total, max_elements // (n * max(1, state.beta.shape[1]))))
    for a in range(0, g_total, chunk):
        s = slice(a, min(a + chunk, g_total))
        y = state.counts[:, s]
        mu0 = state.mu(s).clamp_min(1e-10)
        alpha = torch.exp(log_alpha[s])
        gamma = torch.zeros(mu0.shape[1], dtype=DTYPE, device=dev)
        for _ in range(n_iter):
            mu = mu0 * torch.exp(c[:, None] * gamma)
            denom = 1.0 + alpha * mu
            score = (c[:, None] * (y - mu) / denom).sum(0)
            info = (c[:, None] ** 2 * mu / denom).sum(0).clamp_min(1e-12)
            gamma = (gamma + (score / info).clamp(-1.0, 1.0)).clamp(-max_abs, max_abs)
        mu = mu0 * torch.exp(c[:, None] * gamma)
        w = mu / (1.0 + alpha * mu)
        info = (c[:, None] ** 2 * w).sum(0)
        xwx = torch.einsum("ng,npq->gpq", w, state.moments) + lam
        xwc = torch.einsum("ng,np->gp", w * c[:, None], state.design)
        eff = info - (xwc * torch.linalg.solve(xwx, xwc.unsqueeze(-1)).squeeze(-1)).sum(1)
        eff = torch.maximum(eff, 1e-6 * info).clamp_min(1e-12)
        est[s] = gamma.cpu().numpy()
        se[s] = (1.0 / eff.sqrt()).cpu().numpy()
    return ResidualEffect(est, se)


def latent_separation(z_mean: np.ndarray, group1: np.ndarray, group2: np.ndarray) -> dict[str, float]:
    """How well the latent means separate two groups of samples (each of at least 2 samples).

    ``silhouette``: the mean silhouette width of the two groups (Euclidean; 1 = tight, distinct groups,
    about 0 = no separation); ``cv_accuracy``: the balanced leave-one-out accuracy of a nearest-centroid
    classifier (0.5 = chance).
    """
    z1, z2 = np.asarray(z_mean)[group1], np.asarray(z_mean)[group2]
    z = np.concatenate([z1, z2])
    lab = np.r_[np.zeros(len(z1), bool), np.ones(len(z2), bool)]
    dist = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    n_same = np.where(lab, len(z2), len(z1)) - 1
    same = np.where(lab[None, :] == lab[:, None], dist, 0.0).sum(1) / n_same
    other = np.where(lab[None, :] != lab[:, None], dist, 0.0).sum(1) / np.where(lab, len(z1), len(z2))
    width = np.where(np.maximum(same, other) > 0, (other - same) / np.maximum(np.maximum(same, other), 1e-300), 0.0)
    # leave-one-out nearest centroid: a sample's own group centroid is computed without it
    c1, c2 = z1.mean(0), z2.mean(0)
    correct = np.empty(len(z), bool)
    for i in range(len(z)):
        own = (c2 * len(z2) - z[i]) / (len(z2) - 1) if lab[i] else (c1 * len(z1) - z[i]) / (len(z1) - 1)
        oth = c1 if lab[i] else c2
        correct[i] = np.sum((z[i] - own) ** 2) < np.sum((z[i] - oth) ** 2)
    acc = 0.5 * (correct[~lab].mean() + correct[lab].mean())
    return {"silhouette": float(width.mean()), "cv_accuracy": float(acc)}
