"""``NBVAE``: the AnnData-facing scvi-tools model of the bulk NB-VAE."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import (
    CategoricalJointObsField,
    CategoricalObsField,
    LayerField,
    NumericalJointObsField,
    NumericalObsField,
)
from scvi.model.base import BaseModelClass, RNASeqMixin, UnsupervisedTrainingMixin, VAEMixin

from .._validation import check_obs_key, get_counts
from . import _dispersion, _init, _posterior
from ._module import NBVAEModule

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)


class NBVAE(RNASeqMixin, VAEMixin, UnsupervisedTrainingMixin, BaseModelClass):
    """Negative-binomial variational autoencoder for bulk RNA-seq counts (scvi-tools model).

    Each sample gets a low-dimensional latent code ``z`` (a normal posterior from an encoder on ``log1p(x / s)``);
    every gene is a negative-binomial GLM on the shared features ``[1, z, covariates]`` with the sample's DESeq2
    size factor ``s`` as a fixed offset: ``mu = s * exp(b + z W + c B)``. The per-gene intercepts start at the log
    mean normalised count, so the model trains reliably on a dozen samples and scales to thousands by minibatches.
    Dispersions are gene-wise with DESeq2's empirical-Bayes prior around a mean-dispersion trend: a moments trend
    during training, then (at the end of :meth:`train`) DESeq2's full procedure on the fitted means.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Dimension of the latent space.
    n_hidden
        Width of the encoder's hidden layer.
    weight_prior_sd
        Standard deviation of the normal prior on the decoder's loadings and covariate coefficients (natural-log
        expression per unit of the latent space); it keeps genes that are zero in one region of the latent space
        (or one covariate level) finite.
    """

    _module_cls = NBVAEModule

    def __init__(self, adata: AnnData, n_latent: int = 2, n_hidden: int = 128, weight_prior_sd: float = 1.0):
        super().__init__(adata)
        init, n_cats, n_cont = _init.initial_parameters_from_manager(self.adata_manager, n_latent, weight_prior_sd)
        self.module = self._module_cls(
            self.summary_stats.n_vars,
            init,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_cats_per_cov=n_cats,
            n_continuous_cov=n_cont,
            weight_prior_sd=weight_prior_sd,
        )
        self._model_summary_string = (
            f"NBVAE (bulk NB-VAE): n_latent={n_latent}, n_hidden={n_hidden}, genes={self.summary_stats.n_vars}, "
            f"covariate features={self.module.n_cov_features}"
        )
        self.dispersions_: pd.DataFrame | None = None
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = "counts",
        size_factor_key: str = "size_factors",
        categorical_covariate_keys: Sequence[str] | None = None,
        continuous_covariate_keys: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Register raw counts, size factors and covariates of ``adata`` for :class:`NBVAE`.

        Parameters
        ----------
        adata
            Samples x genes AnnData.
        layer
            Layer with the raw counts (non-negative integers); None means ``X``.
        size_factor_key
            Column of ``obs`` with the size factors (e.g. from :func:`gendex.pp.size_factors`), used as fixed
            offsets, never learned.
        categorical_covariate_keys
            Columns of ``obs`` decoded as categorical covariates (treatment coding, first level = reference).
        continuous_covariate_keys
            Columns of ``obs`` decoded as continuous covariates.
        **kwargs
            Passed on by scvi-tools when loading (``source_registry``).
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        get_counts(adata, layer, dense=False)  # clear errors for missing layers, floats, negatives, NaN
        sf = check_obs_key(adata, size_factor_key).to_numpy(dtype=float)
        if not (np.all(np.isfinite(sf)) and np.all(sf > 0)):
            raise ValueError(f"`adata.obs[{size_factor_key!r}]` must hold finite positive size factors")
        for key in [*(categorical_covariate_keys or []), *(continuous_covariate_keys or [])]:
            check_obs_key(adata, key)
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, None),
            NumericalObsField(REGISTRY_KEYS.SIZE_FACTOR_KEY, size_factor_key, required=True),
            CategoricalJointObsField(REGISTRY_KEYS.CAT_COVS_KEY, _as_list(categorical_covariate_keys)),
            NumericalJointObsField(REGISTRY_KEYS.CONT_COVS_KEY, _as_list(continuous_covariate_keys)),
        ]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    def train(
        self,
        max_epochs: int | None = None,
        *,
        lr: float = 1e-2,
        batch_size: int | None = None,
        early_stopping: bool = True,
        early_stopping_patience: int = 50,
        early_stopping_tol: float = 0.005,
        n_epochs_kl_warmup: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        fit_dispersions: bool = True,
        plan_kwargs: dict | None = None,
        **trainer_kwargs: Any,
    ):
        """Train with bulk-sized defaults, then fit the empirical-Bayes dispersions on the fitted means.

        Parameters
        ----------
        max_epochs
            Maximum number of epochs; None means about 3,000 optimizer steps (between 100 and 1,000 epochs).
        lr
            Adam learning rate (``eps=1e-8``).
        batch_size
            Minibatch size; None means the full data set up to 512 samples (one step per epoch), else 256.
        early_stopping
            Stop when the training ELBO per sample has not improved by more than ``early_stopping_tol`` nats per
            gene for ``early_stopping_patience`` epochs (all samples are used for training; there is no
            validation split, see the notes of :func:`gendex.tl.nbvae`).
        early_stopping_patience
            Patience of early stopping, in epochs.
        early_stopping_tol
            Smallest improvement of the per-sample ELBO that counts, in nats per gene.
        n_epochs_kl_warmup
            Epochs of linear KL warm-up; None means a tenth of ``max_epochs``.
        accelerator, devices
            Passed to Lightning (``"cpu"``, ``"gpu"``, ``"auto"``; device count or indices). Further Lightning
            ``Trainer`` arguments, e.g. ``strategy="ddp"``, go through ``**trainer_kwargs``.
        fit_dispersions
            Run :meth:`fit_dispersions` after the gradient phase.
        plan_kwargs
            Extra arguments of :class:`scvi.train.TrainingPlan` (override the defaults above).
        **trainer_kwargs
            Extra arguments of :class:`scvi.train.Trainer` / Lightning's ``Trainer``.
        """
        n_obs = self.adata.n_obs
        if batch_size is None:
            batch_size = n_obs if n_obs <= 512 else 256
        steps = int(np.ceil(n_obs / batch_size))
        if max_epochs is None:
            max_epochs = int(min(1000, max(100, np.ceil(3000 / steps))))
        plan = {
            "lr": lr,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "n_epochs_kl_warmup": max(1, max_epochs // 10) if n_epochs_kl_warmup is None else n_epochs_kl_warmup,
            **(plan_kwargs or {}),
        }
        callbacks = list(trainer_kwargs.pop("callbacks", []))
        if early_stopping:
            callbacks.append(
                EarlyStopping(
                    monitor="elbo_train",
                    min_delta=early_stopping_tol * self.summary_stats.n_vars,
                    patience=early_stopping_patience,
                    check_on_train_epoch_end=True,
                )
            )
        trainer_kwargs.setdefault("enable_checkpointing", False)
        trainer_kwargs.setdefault("log_every_n_steps", max(1, min(10, steps)))
        out = super().train(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            train_size=1.0,
            batch_size=batch_size,
            early_stopping=False,
            plan_kwargs=plan,
            callbacks=callbacks,
            datasplitter_kwargs={"drop_last": False},
            **trainer_kwargs,
        )
        if fit_dispersions:
            self.fit_dispersions()
        return out

    @torch.inference_mode()
    def fit_dispersions(self, *, max_samples: int = 200, random_state: int = 0) -> pd.DataFrame:
        """DESeq2's dispersion procedure on the decoded means; sets the module's dispersions and prior.

        Gene-wise Cox-Reid adjusted estimates given the fitted means at the latent posterior means, the
        parametric trend, the prior variance, the MAP dispersions (gene-wise kept for outliers more than two prior
        standard deviations above the trend) and the posterior variance of each log dispersion.
        At most ``max_samples`` random samples are used (the posterior variances are then scaled to all samples).

        Returns
        -------
        The table stored in ``model.dispersions_`` (genes x ``baseMean, genewise, trend, MAP, dispersion,
        outlier, log_dispersion_var``).
        """
        state = _posterior.glm_state(self, max_samples=max_samples, random_state=random_state)
        base_mean = (state.counts / state.size_factors[:, None]).mean(0).cpu().numpy()
        fit = _dispersion.fit_dispersions(state.counts, state.mu(), state.moments, base_mean)
        fit.log_final_var = fit.log_final_var * len(state.indices) / self.adata.n_obs
        self.module.set_dispersions(fit.log_final, fit.log_trend, fit.prior_var)
        self.dispersions_ = fit.to_frame(base_mean, self.adata.var_names)
        self.dispersion_trend_ = {"kind": fit.trend_kind, "coefs": fit.trend_coefs.tolist(), "prior_var": fit.prior_var}
        return self.dispersions_

    @torch.inference_mode()
    def get_decoded_means(self) -> np.ndarray:
        """Decoded size-factor-normalised means of every sample at its latent posterior mean, ``(n_obs, n_genes)``.

        Deterministic, unlike scvi-tools' ``get_normalized_expression``, which decodes a draw of each latent code.
        """
        z = torch.as_tensor(self.get_latent_representation(), device=self.device)
        feats = _posterior.covariate_features(self) if self.module.n_cov_features else None
        return torch.exp(self.module.log_normalized_mean(z, feats)).cpu().numpy().astype(np.float64)

    @torch.inference_mode()
    def decode_latent(self, latent: np.ndarray) -> np.ndarray:
        """Decoded size-factor-normalised means at latent points ``(m, n_latent)`` -> ``(m, n_genes)``.

        Covariates, if any, are held at their average feature values over the registered samples.
        """
        z = torch.as_tensor(np.asarray(latent, dtype=np.float32), device=self.device)
        feats = _posterior.covariate_features(self).mean(0, keepdim=True) if self.module.n_cov_features else None
        return torch.exp(self.module.log_normalized_mean(z, feats)).cpu().numpy().astype(np.float64)


def _as_list(keys: Sequence[str] | None) -> list[str] | None:
    if keys is None:
        return None
    return [keys] if isinstance(keys, str) else list(keys)
