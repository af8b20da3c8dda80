"""The torch module of the NB-VAE: an encoder and a per-gene log-linear (GLM-like) negative-binomial decoder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.distributions import NegativeBinomial
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from scvi.nn import FCLayers
from torch import nn
from torch.distributions import Normal, kl_divergence

#: Output scale of the encoder's learned heads (see :class:`BulkEncoder`).
HEAD_SCALE = 0.1


def covariate_design(
    cat_covs: torch.Tensor | None, cont_covs: torch.Tensor | None, n_cats_per_cov: list[int], n_continuous_cov: int
) -> torch.Tensor | None:
    """Covariate features ``(..., f)``: one-hot levels without the first (treatment coding), then continuous."""
    parts = []
    for j, n_cat in enumerate(n_cats_per_cov):
        parts.append(F.one_hot(cat_covs[..., j].long(), n_cat).to(torch.float32)[..., 1:])
    if n_continuous_cov:
        parts.append(cont_covs.to(torch.float32))
    return torch.cat(parts, dim=-1) if parts else None


class BulkEncoder(nn.Module):
    """Encoder of ``log1p(x / s)`` into a normal ``q(z | x)``: fixed PCA projection plus a learned MLP.

    The posterior mean is ``(u - centre - c E) P + head(h(u))`` with ``u = log1p(x / s)``: ``E`` (fixed) removes
    the covariates' least-squares effects, so the codes describe what the covariates do not, and ``P`` (fixed)
    projects on the principal axes of the remainder, and the learned head (layer-normalised hidden layer)
    starts at zero, so training starts from the PCA embedding and learns corrections. (A learned linear map of
    thousands of genes moves the codes by orders of magnitude per Adam step, so it stays fixed.) The log variance
    comes from the MLP, starting small (bulk samples carry much information about their code). The heads' outputs
    are scaled by ``HEAD_SCALE`` so that an Adam step (each weight moves by about the learning rate) moves the
    codes by a small amount.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        n_hidden: int,
        centre: np.ndarray,
        projection: np.ndarray,
        cov_effect: np.ndarray,
    ):
        super().__init__()
        self.register_buffer("centre", torch.as_tensor(np.asarray(centre), dtype=torch.float32).clone())
        self.register_buffer("cov_effect", torch.as_tensor(np.asarray(cov_effect), dtype=torch.float32).clone())
        self.register_buffer("projection", torch.as_tensor(np.asarray(projection), dtype=torch.float32).clone())
        self.hidden = FCLayers(
            n_input,
            n_hidden,
            n_layers=1,
            n_hidden=n_hidden,
            dropout_rate=0.0,
            use_batch_norm=False,
            use_layer_norm=True,
        )
        self.mean_head = nn.Linear(n_hidden, n_latent)
        nn.init.zeros_(self.mean_head.weight)
        nn.init.zeros_(self.mean_head.bias)
        self.var_head = nn.Linear(n_hidden, n_latent)
        nn.init.zeros_(self.var_head.weight)
        nn.init.zeros_(self.var_head.bias)

    def forward(self, u: torch.Tensor, cov_features: torch.Tensor | None = None) -> Normal:
        """Posterior ``q(z | x)`` from the log-normalised counts ``u`` (and the covariate features)."""
        h = self.hidden(u)
        v = u - self.centre
        if cov_features is not None and self.cov_effect.numel():
            v = v - cov_features @ self.cov_effect
        mean = v @ self.projection + HEAD_SCALE * self.mean_head(h)
        var = torch.exp(HEAD_SCALE * self.var_head(h) - 4.0) + 1e-4
        return Normal(mean, var.sqrt())


class NBVAEModule(BaseModuleClass):
    """Variational autoencoder for bulk counts with a per-gene generalised-linear decoder.

    For sample ``i`` with latent code ``z_i``, covariate features ``c_i`` (one-hot categorical levels without the
    first, then continuous values) and fixed size factor ``s_i``, gene ``g`` has the negative-binomial mean
    ``mu_ig = s_i * exp(b_g + z_i . W_g + c_i . B_g)`` and dispersion ``alpha_g`` (``Var = mu + alpha mu^2``).
    ``exp(b_g + z_i W_g + c_i B_g)`` is the decoded size-factor-normalised expression. The encoder sees
    ``log1p(x / s)``. The loss is the negative ELBO plus the negative log prior of the global parameters:
    a normal prior on ``log alpha_g`` around a mean-dispersion trend (DESeq2's empirical-Bayes prior) and a
    weak normal prior on the loadings ``W`` and covariate coefficients ``B``.

    Parameters
    ----------
    n_input
        Number of genes.
    init
        Initial values (from ``gendex.model._init.initial_parameters``): ``intercept`` ``(G,)``, ``loadings``
        ``(G, n_latent)``, ``cov_coef`` ``(G, f)``, ``log_disp`` ``(G,)``, the dispersion prior
        ``log_disp_prior_mean`` ``(G,)`` and ``disp_prior_var``, and the encoder's ``encoder_centre`` ``(G,)``,
        ``encoder_projection`` ``(G, n_latent)`` and ``encoder_cov_effect`` ``(f, G)``.
    n_latent
        Dimension of the latent space.
    n_hidden
        Width of the encoder's hidden layer.
    n_cats_per_cov
        Number of levels of each categorical covariate.
    n_continuous_cov
        Number of continuous covariates.
    weight_prior_sd
        Standard deviation of the normal prior on ``W`` and ``B``.
    """

    def __init__(
        self,
        n_input: int,
        init: Mapping[str, Any],
        *,
        n_latent: int = 2,
        n_hidden: int = 128,
        n_cats_per_cov: list[int] | tuple[int, ...] | None = None,
        n_continuous_cov: int = 0,
        weight_prior_sd: float = 1.0,
    ):
        super().__init__()
        self.n_input = n_input
        self.n_latent = n_latent
        self.n_cats_per_cov = [int(k) for k in (n_cats_per_cov or [])]
        self.n_continuous_cov = int(n_continuous_cov)
        self.n_cov_features = sum(k - 1 for k in self.n_cats_per_cov) + self.n_continuous_cov
        self.weight_prior_sd = float(weight_prior_sd)

        def t(key):
            return torch.as_tensor(np.asarray(init[key]), dtype=torch.float32).clone()

        self.z_encoder = BulkEncoder(
            n_input,
            n_latent,
            n_hidden,
            init["encoder_centre"],
            init["encoder_projection"],
            np.asarray(init["encoder_cov_effect"]).reshape(self.n_cov_features, n_input),
        )
        self.intercept = nn.Parameter(t("intercept"))
        self.loadings = nn.Parameter(t("loadings").reshape(n_input, n_latent))
        self.cov_coef = nn.Parameter(t("cov_coef").reshape(n_input, self.n_cov_features))
        self.log_disp = nn.Parameter(t("log_disp"))
        self.register_buffer("log_disp_prior_mean", t("log_disp_prior_mean"))
        self.register_buffer("disp_prior_var", t("disp_prior_var"))

    # ------------------------------------------------------------------ features of the decoder
    def covariate_features(self, cat_covs: torch.Tensor | None, cont_covs: torch.Tensor | None) -> torch.Tensor | None:
        """Design features of the covariates: one-hot levels without the first, then continuous values."""
        return covariate_design(cat_covs, cont_covs, self.n_cats_per_cov, self.n_continuous_cov)

    def log_normalized_mean(self, z: torch.Tensor, cov_features: torch.Tensor | None) -> torch.Tensor:
        """``b_g + z W_g^T + c B_g^T``: log of the decoded size-factor-normalised mean, shape ``(..., n_genes)``."""
        eta = self.intercept + z @ self.loadings.T
        if cov_features is not None and self.n_cov_features:
            if cov_features.dim() < z.dim():
                cov_features = cov_features.expand(*z.shape[:-1], cov_features.shape[-1])
            eta = eta + cov_features @ self.cov_coef.T
        return eta

    # ------------------------------------------------------------------ scvi-tools module contract
    def _get_inference_input(self, tensors, **kwargs):
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "size_factor": tensors[REGISTRY_KEYS.SIZE_FACTOR_KEY],
            "cat_covs": tensors.get(REGISTRY_KEYS.CAT_COVS_KEY),
            "cont_covs": tensors.get(REGISTRY_KEYS.CONT_COVS_KEY),
        }

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        return {
            "z": inference_outputs["z"],
            "size_factor": tensors[REGISTRY_KEYS.SIZE_FACTOR_KEY],
            "cat_covs": tensors.get(REGISTRY_KEYS.CAT_COVS_KEY),
            "cont_covs": tensors.get(REGISTRY_KEYS.CONT_COVS_KEY),
        }

    @auto_move_data
    def inference(self, x, size_factor, cat_covs=None, cont_covs=None, n_samples: int = 1):
        """Encode ``log1p(x / s)`` (and the covariates) into the normal posterior ``q(z | x)`` and draw ``z``."""
        qz = self.z_encoder(torch.log1p(x / size_factor), self.covariate_features(cat_covs, cont_covs))
        z = qz.rsample((n_samples,)) if n_samples > 1 else qz.rsample()
        return {"z": z, "qz": qz}

    @auto_move_data
    def generative(self, z, size_factor, cat_covs=None, cont_covs=None, transform_batch=None):
        """Decode ``z`` (and covariates) into the negative binomial of the counts.

        ``transform_batch`` is accepted for scvi-tools' :class:`~scvi.model.base.RNASeqMixin`; the model has no
        batch field (use categorical covariates and :func:`gendex.tl.generative_de` for counterfactuals).
        """
        if transform_batch is not None:
            raise ValueError("NBVAE has no batch field; decode counterfactuals through categorical covariates")
        feats = self.covariate_features(cat_covs, cont_covs)
        scale = torch.exp(self.log_normalized_mean(z, feats))
        mu = size_factor * scale
        theta = torch.exp(-self.log_disp).expand_as(mu)
        return {
            "px": NegativeBinomial(mu=mu, theta=theta, scale=scale),
            "pz": Normal(torch.zeros_like(z), torch.ones_like(z)),
        }

    @torch.no_grad()
    def set_dispersions(self, log_disp: np.ndarray, log_prior_mean: np.ndarray, prior_var: float) -> None:
        """Set the log dispersions and their empirical-Bayes prior (centre per gene and variance)."""
        self.log_disp.copy_(torch.as_tensor(log_disp, dtype=self.log_disp.dtype))
        self.log_disp_prior_mean.copy_(torch.as_tensor(log_prior_mean, dtype=self.log_disp_prior_mean.dtype))
        self.disp_prior_var.fill_(float(prior_var))

    def global_prior(self) -> torch.Tensor:
        """Negative log prior of the global parameters (dispersion prior + weight prior), up to constants."""
        disp = 0.5 * ((self.log_disp - self.log_disp_prior_mean) ** 2).sum() / self.disp_prior_var
        weights = 0.5 * ((self.loadings**2).sum() + (self.cov_coef**2).sum()) / self.weight_prior_sd**2
        return disp + weights

    def loss(self, tensors, inference_outputs, generative_outputs, kl_weight: float = 1.0, n_obs: int = 1):
        """Negative ELBO per sample plus the global prior divided by the number of training samples."""
        x = tensors[REGISTRY_KEYS.X_KEY]
        rec = -generative_outputs["px"].log_prob(x).sum(-1)
        kl = kl_divergence(inference_outputs["qz"], generative_outputs["pz"]).sum(-1)
        glob = self.global_prior()
        loss = torch.mean(rec + kl_weight * kl) + glob / n_obs
        return LossOutput(loss=loss, reconstruction_loss=rec, kl_local=kl, kl_global=glob)

    @torch.inference_mode()
    def sample(self, tensors, n_samples: int = 1, generative_kwargs: dict | None = None) -> torch.Tensor:
        """Posterior predictive counts, shape ``(B, G)`` or ``(B, G, n_samples)``."""
        _, gen = self.forward(
            tensors,
            inference_kwargs={"n_samples": n_samples},
            generative_kwargs=generative_kwargs,
            compute_loss=False,
        )
        counts = gen["px"].sample()
        return (counts.permute(1, 2, 0) if n_samples > 1 else counts).cpu()
